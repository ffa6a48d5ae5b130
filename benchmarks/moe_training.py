"""Sparse vs dense MoE in the torch training path: forward + backward of one expert layer.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/moe_training.py [--tokens 2048] [--repeats 7]

Two shapes, each with random routing: Mixtral-like (8 experts, top-2) and
DeepSeek-like (64 fine-grained experts, top-6), hidden 256, gated SiLU. The
dense form runs every expert on every token (what `torch.export` gets); the
sparse form (what training runs) multiplies each expert by its own tokens only.
Rounds alternate the two forms; the table shows medians and the speed ratio,
next to the FLOP ratio experts/top_k the sparse form can at best reach.
Results also go to benchmarks/results/moe_training.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from irgraph.codegen.torch.lowerings import ACTIVATIONS
from irgraph.codegen.torch.moe import dense_experts, sparse_experts

SHAPES = {
    "mixtral-like (8 experts, top-2)": (8, 2, 512),
    "deepseek-like (64 experts, top-6)": (64, 6, 128),
}
HIDDEN = 256


def step_seconds(run, tokens: int, experts: int, top_k: int, ffn: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, HIDDEN, generator=gen, requires_grad=True)
    logits = torch.randn(tokens, experts, generator=gen)
    weights = torch.softmax(logits, -1).topk(top_k, -1).values.requires_grad_()
    indices = logits.topk(top_k, -1).indices
    mats = [
        (torch.randn(experts, *s, generator=gen) * 0.05).requires_grad_()
        for s in ((ffn, HIDDEN), (HIDDEN, ffn), (ffn, HIDDEN))
    ]
    t0 = time.perf_counter()
    run(
        x, weights, indices, mats[0], mats[1], mats[2], ACTIVATIONS["silu"]
    ).square().mean().backward()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "moe_training.json"
    )
    args = ap.parse_args()
    rows = []
    print(
        f"{args.tokens} tokens, hidden {HIDDEN}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'shape':<36} {'dense ms':>9} {'sparse ms':>10} {'speed-up':>9} {'FLOP ratio':>11}")
    for name, (experts, top_k, ffn) in SHAPES.items():
        times: dict[str, list[float]] = {"dense": [], "sparse": []}
        for r in range(args.repeats + 1):  # round 0 warms up
            for form, run in (("dense", dense_experts), ("sparse", sparse_experts)):
                s = step_seconds(run, args.tokens, experts, top_k, ffn, seed=r)
                if r:
                    times[form].append(s)
        dense, sparse = statistics.median(times["dense"]), statistics.median(times["sparse"])
        rows.append(
            {
                "shape": name,
                "experts": experts,
                "top_k": top_k,
                "ffn": ffn,
                "tokens": args.tokens,
                "dense_ms": dense * 1e3,
                "sparse_ms": sparse * 1e3,
                "speedup": dense / sparse,
            }
        )
        print(
            f"{name:<36} {dense * 1e3:>9.1f} {sparse * 1e3:>10.1f} {dense / sparse:>8.2f}x "
            f"{experts / top_k:>10.1f}x"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
