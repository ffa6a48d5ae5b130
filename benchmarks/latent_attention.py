"""One DeepSeek-V2 latent-attention layer, one decoded token: absorbed (ONNX, TVM) vs re-expanded.

The re-expanded form runs in PyTorch eager.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/latent_attention.py
        [--contexts 512,2048,4096] [--repeats 30]

The layer is the `latent_attention` op at DeepSeek-V2-Lite's sizes (16 heads,
nope 128 + rope 64, v 128, kv_rank 512, random weights) with its latent cache
as input. irgraph's ONNX and TVM backends run it with kv_b absorbed into the
query and the output (multi-query attention over the [c, k_rope] cache: the
pass absorb-latent, which both run before lowering); the PyTorch eager module
of irgraph's training path re-expands K and V from the cache every call, as the op's definition
does. Each system decodes one token after `context` cached tokens, one thread,
calls interleaved; the table shows median latencies, each backend's speed-up
over PyTorch eager, and the analysed FLOPs of the two forms. Outputs are
checked against the numpy interpreter first.
Results also go to benchmarks/results/latent_attention.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import irgraph
from irgraph import GraphBuilder
from irgraph.analysis import graph_flops
from irgraph.codegen.onnx import compile_graph as compile_onnx
from irgraph.codegen.torch.module import numpy_runner, to_torch
from irgraph.codegen.tvm.artifact import compile_graph as compile_tvm
from irgraph.runtimes.onnx import ORTSession
from irgraph.runtimes.tvm import TVMSession

HEADS, NOPE, ROPE, V_DIM, RANK = 16, 128, 64, 128, 512


def layer() -> irgraph.Graph:
    b = GraphBuilder("mla-layer")
    q = b.input("q", f"f32[batch, seq, {HEADS}, {NOPE + ROPE}]")
    latent = b.input("latent", f"f32[batch, seq, {RANK}]")
    k_rope = b.input("k_rope", f"f32[batch, seq, 1, {ROPE}]")
    past = b.input("past_latent", f"f32[batch, past, {RANK + ROPE}]")
    mask = b.input("key_mask", "i64[batch, past+seq]")
    kv_b = b.param("kv_b", f"f32[{HEADS * (NOPE + V_DIM)}, {RANK}]")
    out, present = b.latent_attention(
        q, latent, k_rope, kv_b, past, mask, nope_dim=NOPE, v_dim=V_DIM
    )
    b.output("out", out)
    b.output("present_latent", present)
    rng = np.random.default_rng(0)
    return b.build(
        {
            "kv_b": (RANK**-0.5 * rng.standard_normal((HEADS * (NOPE + V_DIM), RANK))).astype(
                np.float32
            )
        }
    )


def feeds(context: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(context)

    def f32(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "q": f32(1, 1, HEADS, NOPE + ROPE),
        "latent": f32(1, 1, RANK),
        "k_rope": f32(1, 1, 1, ROPE),
        "past_latent": f32(1, context, RANK + ROPE),
        "key_mask": np.ones((1, context + 1), dtype=np.int64),
    }


def expanded_flops(context: int) -> int:
    """The op's definition: expand K/V for every cached token, then attend (as eager runs it)."""
    total = context + 1
    expand = 2 * total * RANK * HEADS * (NOPE + V_DIM)
    return expand + 2 * HEADS * total * (NOPE + ROPE + V_DIM)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contexts", default="512,2048,4096")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "latent_attention.json"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    graph = layer()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        module = numpy_runner(to_torch(graph))
        systems: dict[str, Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]] = {
            "torch-eager (expanded)": module,
            "irgraph-onnx (absorbed)": ORTSession(
                compile_onnx(graph, Path(tmp) / "onnx"), threads=1
            ).run,
            "irgraph-tvm (absorbed)": TVMSession(
                compile_tvm(graph, Path(tmp) / "tvm"), threads=1
            ).run,
        }
        print(f"{'context':>7} {'system':<24} {'ms':>8} {'x eager':>8} {'GFLOP':>7}")
        for context in map(int, args.contexts.split(",")):
            x = feeds(context)
            want = irgraph.interpreter.run(graph, x)["out"]
            for name, run in systems.items():
                err = float(np.abs(run(x)["out"] - want).max())
                if err > 1e-3:
                    raise SystemExit(
                        f"{name} differs from the interpreter by {err:.2e} at context {context}"
                    )
            times: dict[str, list[float]] = {name: [] for name in systems}
            for r in range(args.repeats + 2):
                for name, run in systems.items():
                    t0 = time.perf_counter()
                    run(x)
                    if r >= 2:  # two warm-up rounds
                        times[name].append(time.perf_counter() - t0)
            med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
            eager = med["torch-eager (expanded)"]
            absorbed = graph_flops(graph, 1, context)
            for name, ms in med.items():
                flops = expanded_flops(context) if "expanded" in name else absorbed
                rows.append(
                    {
                        "context": context,
                        "system": name,
                        "ms": ms,
                        "speedup_vs_eager": eager / ms,
                        "gflop": flops / 1e9,
                    }
                )
                print(
                    f"{context:>7} {name:<24} {ms:>8.3f} {eager / ms:>7.2f}x {flops / 1e9:>7.3f}",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
