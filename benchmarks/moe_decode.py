"""ONNX Runtime MoE layer: ORT's fused MoE op (what the `ort` flavour emits) vs the dense form.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/moe_decode.py [--repeats 200]

One gated-SiLU expert layer (Mixtral-like: 8 experts, top-2, hidden 1024, FFN
3584; DeepSeek-like: 64 experts, top-6, hidden 1024, FFN 512) with the IR
router in front, compiled twice from the same IR graph, run for one token
(decode) and for 128 tokens (prefill), one thread. Calls alternate between the
two sessions; the table shows median latencies and dense/fused ratios.
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
from irgraph.codegen.onnx import compile_graph, lower_moe
from irgraph.runtimes.onnx import ORTSession

SHAPES = {"mixtral-like (8 experts, top-2)": (8, 2, 3584), "deepseek-like (64 experts, top-6)": (64, 6, 512)}
HIDDEN = 1024


def moe_layer(experts: int, top_k: int, ffn: int):
    rng = np.random.default_rng(0)
    b = GraphBuilder("moe-layer")
    x = b.input("x", f"f32[batch, seq, {HIDDEN}]")
    weights = {"router": rng.standard_normal((experts, HIDDEN)).astype(np.float32)}
    for name, shape in (("up", (experts, ffn, HIDDEN)), ("down", (experts, HIDDEN, ffn)),
                        ("gate", (experts, ffn, HIDDEN))):
        weights[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
    w, idx = b.moe_router(x, b.param("router", f"f32[{experts}, {HIDDEN}]"), top_k=top_k)
    params = [b.param(n, f"f32[{', '.join(map(str, weights[n].shape))}]") for n in ("up", "down", "gate")]
    b.output("y", b.moe_experts(x, w, idx, *params, act="silu"))
    return b.build(weights)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "moe_decode.json")
    args = ap.parse_args()
    rows = []
    print(f"{'shape':<36} {'tokens':>6} {'dense ms':>9} {'fused ms':>9} {'dense/fused':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (experts, top_k, ffn) in SHAPES.items():
            graph = moe_layer(experts, top_k, ffn)
            fused = ORTSession(compile_graph(graph, Path(tmp) / f"{experts}-fused", flavour="ort"), threads=1)
            with mock.patch.object(lower_moe, "_fused_moe_fits", lambda e, node: False):
                dense = ORTSession(compile_graph(graph, Path(tmp) / f"{experts}-dense", flavour="ort"), threads=1)
            for tokens in (1, 128):
                x = np.random.default_rng(1).standard_normal((1, tokens, HIDDEN)).astype(np.float32)
                times: dict[str, list[float]] = {"dense": [], "fused": []}
                reps = args.repeats if tokens == 1 else max(args.repeats // 20, 5)
                for r in range(reps + 2):
                    for form, session in (("dense", dense), ("fused", fused)):
                        t0 = time.perf_counter()
                        session.run({"x": x})
                        if r >= 2:  # two warm-up rounds
                            times[form].append(time.perf_counter() - t0)
                d, f = statistics.median(times["dense"]), statistics.median(times["fused"])
                rows.append({"shape": name, "tokens": tokens, "dense_ms": d * 1e3, "fused_ms": f * 1e3,
                             "ratio": d / f})
                print(f"{name:<36} {tokens:>6} {d * 1e3:>9.2f} {f * 1e3:>9.2f} {d / f:>11.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
