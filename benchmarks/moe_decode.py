"""One MoE layer, sparse vs dense, on ONNX Runtime and TVM.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/moe_decode.py [--repeats 200]

One gated-SiLU expert layer (Mixtral-like: 8 experts, top-2, hidden 1024, FFN
3584; DeepSeek-like: 64 experts, top-6, hidden 1024, FFN 512) with the IR
router in front, compiled twice per backend from the same IR graph: ONNX `ort`
flavour with ORT's fused MoE op vs the dense form (every expert on every
token), and tvm-llvm with routed kernels (only the chosen experts' weights are
read) vs the dense form. Each runs one token (decode) and 128 tokens
(prefill), one thread; calls alternate between the two sessions of a backend;
the table shows median latencies and dense/sparse ratios.
Results also go to benchmarks/results/moe_decode.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from irgraph import GraphBuilder
from irgraph.codegen.onnx import compile_graph as compile_onnx
from irgraph.codegen.onnx import lower_moe as onnx_moe
from irgraph.codegen.tvm import lower_moe as tvm_moe
from irgraph.codegen.tvm.artifact import compile_graph as compile_tvm
from irgraph.runtimes.onnx import ORTSession
from irgraph.runtimes.tvm import TVMSession

SHAPES = {
    "mixtral-like (8 experts, top-2)": (8, 2, 3584),
    "deepseek-like (64 experts, top-6)": (64, 6, 512),
}
HIDDEN = 1024


def moe_layer(experts: int, top_k: int, ffn: int):
    rng = np.random.default_rng(0)
    b = GraphBuilder("moe-layer")
    x = b.input("x", f"f32[batch, seq, {HIDDEN}]")
    weights = {"router": rng.standard_normal((experts, HIDDEN)).astype(np.float32)}
    for name, shape in (
        ("up", (experts, ffn, HIDDEN)),
        ("down", (experts, HIDDEN, ffn)),
        ("gate", (experts, ffn, HIDDEN)),
    ):
        weights[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
    w, idx = b.moe_router(x, b.param("router", f"f32[{experts}, {HIDDEN}]"), top_k=top_k)
    params = [
        b.param(n, f"f32[{', '.join(map(str, weights[n].shape))}]") for n in ("up", "down", "gate")
    ]
    b.output("y", b.moe_experts(x, w, idx, *params, act="silu"))
    return b.build(weights)


def sessions(graph, folder: Path):
    """(backend, sparse session, dense session) for ONNX Runtime and TVM."""
    sparse = ORTSession(compile_onnx(graph, folder / "onnx-sparse", flavour="ort"), threads=1)
    with mock.patch.object(onnx_moe, "_fused_moe_fits", lambda e, node: False):
        dense = ORTSession(compile_onnx(graph, folder / "onnx-dense", flavour="ort"), threads=1)
    yield "onnx", sparse, dense
    sparse = TVMSession(compile_tvm(graph, folder / "tvm-sparse"), threads=1)
    with mock.patch.object(tvm_moe, "routed_fits", lambda ctx: False):
        dense = TVMSession(compile_tvm(graph, folder / "tvm-dense"), threads=1)
    yield "tvm", sparse, dense


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "moe_decode.json"
    )
    args = ap.parse_args()
    rows = []
    print(
        f"{'backend':<6} {'shape':<36} {'tokens':>6} {'dense ms':>9} {'sparse ms':>10} "
        f"{'dense/sparse':>13}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, (experts, top_k, ffn) in SHAPES.items():
            graph = moe_layer(experts, top_k, ffn)
            for backend, sparse, dense in sessions(graph, Path(tmp) / str(experts)):
                for tokens in (1, 128):
                    x = (
                        np.random.default_rng(1)
                        .standard_normal((1, tokens, HIDDEN))
                        .astype(np.float32)
                    )
                    times: dict[str, list[float]] = {"dense": [], "sparse": []}
                    reps = args.repeats if tokens == 1 else max(args.repeats // 20, 5)
                    for r in range(reps + 2):
                        for form, session in (("dense", dense), ("sparse", sparse)):
                            t0 = time.perf_counter()
                            session.run({"x": x})
                            if r >= 2:  # two warm-up rounds
                                times[form].append(time.perf_counter() - t0)
                    d, f = statistics.median(times["dense"]), statistics.median(times["sparse"])
                    rows.append(
                        {
                            "backend": backend,
                            "shape": name,
                            "tokens": tokens,
                            "dense_ms": d * 1e3,
                            "sparse_ms": f * 1e3,
                            "ratio": d / f,
                        }
                    )
                    print(
                        f"{backend:<6} {name:<36} {tokens:>6} {d * 1e3:>9.2f} {f * 1e3:>10.2f} "
                        f"{d / f:>12.2f}x",
                        flush=True,
                    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
