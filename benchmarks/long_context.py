"""Decode speed and memory at long contexts: each KV-cache rewrite against the unrewritten model.

    .venv/bin/python -m benchmarks.long_context [--contexts 512,2048,8192] [--steps 8] [--quick]

The model is a LLaMA-form decoder of ~125M parameters (12 layers, hidden 768, 12 heads with
4 KV heads, FFN 2048, vocab 32000, rotary, 8192 positions; random weights: speed and memory
do not depend on them), built by the zoo's builder. Each system is the model after one
pipeline (none, gqa-to-mha, mha-to-gqa(kv_heads=1), kv-layout(layout=bsnh), quantize-kv
(int8 per head), paged-kv(block=16), and sliding-window-cache on the same weights with a
1024-token window), compiled to an ONNX artifact. For each context L, a fresh subprocess
opens the artifact, feeds a random cache of L tokens (in the system's own cache shapes) and
decodes `steps` tokens through `Session.step`, batch 1; it reports the median step time and
its peak resident memory (ru_maxrss: weights, session and cache together). Prefill is not
timed: the decode step at L cached tokens is what the cache shape changes. `--quick`: 4
layers, hidden 384, vocab 256.
Results go to benchmarks/results/long_context.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SYSTEMS = {
    "baseline (GQA 4 of 12)": "",
    "gqa-to-mha": "gqa-to-mha",
    "mha-to-gqa(kv_heads=1)": "mha-to-gqa(kv_heads=1)",
    "kv-layout(bsnh)": "kv-layout(layout=bsnh)",
    "quantize-kv(int8)": "quantize-kv",
    "paged-kv(block=16)": "paged-kv(block=16)",
    "sliding-window(1024)": "sliding-window-cache",  # on the model with a 1024-token window
}
WINDOW = 1024  # the window the sliding-window row's model attends within
FULL = dict(hidden=768, layers=12, heads=12, kv_heads=4, ffn=2048, vocab_size=32000)
QUICK = dict(hidden=384, layers=4, heads=12, kv_heads=4, ffn=768, vocab_size=256)
POSITIONS = 8192


def build(quick: bool, window: int = 0):  # -> Graph
    from irgraph import model_zoo
    from irgraph.model_zoo import build_graph

    base = model_zoo.config("llama-2", "published")
    dims = QUICK if quick else FULL
    cfg = dataclasses.replace(
        base, name="llama-125m", max_position=POSITIONS, sliding_window=window, **dims
    )
    return build_graph(cfg, weights="random", seed=0)


def measure(artifact: str, context: int, steps: int) -> dict:
    """In this process: decode `steps` tokens after a random cache of `context` tokens."""
    import irgraph.runtimes
    from irgraph import lm

    session = irgraph.runtimes.open(artifact)
    rng = np.random.default_rng(0)
    cache = {}
    paged = lm.BLOCK_TABLE in session.inputs
    for name, t in lm.cache_inputs(session.inputs).items():
        shape = [
            1 if str(d) == "batch" else context if not isinstance(d, int) else d for d in t.shape
        ]
        if paged:  # [pages, block, ...]: the pages `context + steps + 1` tokens need
            shape[0] = -(-(context + steps + 1) // int(t.shape[1]))
        if t.dtype.value == "i8":  # quantize-kv's cache
            cache[name] = rng.integers(-127, 128, size=shape, dtype=np.int8)
        elif name.endswith("_scale"):
            cache[name] = np.full(shape, 1e-3, dtype=np.float32)
        else:
            cache[name] = rng.standard_normal(shape).astype(np.float32) * 0.1
    times = []
    ids = np.array([[1]], dtype=np.int64)
    for i in range(steps + 1):
        past = context + i
        feeds = lm.make_feeds(session.inputs, ids, cache, past_len=past)
        t0 = time.perf_counter()
        logits, cache = session.step(feeds)
        if i:  # the first step warms the session up
            times.append(time.perf_counter() - t0)
        ids = np.asarray(logits)[:, -1:].argmax(-1).astype(np.int64)
    return {
        "step_ms": statistics.median(times) * 1e3,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contexts", default="512,2048,8192")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--measure", nargs=2, metavar=("ARTIFACT", "CONTEXT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:  # the child process
        print(json.dumps(measure(args.measure[0], int(args.measure[1]), args.steps)))
        return
    from irgraph.analysis import kv_bytes_per_token
    from irgraph.codegen.onnx import compile_graph
    from irgraph.passes import run_pipeline

    contexts = [int(c) for c in args.contexts.split(",")]
    graph, windowed = build(args.quick), build(args.quick, window=WINDOW)
    params = sum(v.type.numel() for v in graph.params.values())
    results: dict = {"params": params, "contexts": contexts, "steps": args.steps, "systems": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, pipeline in SYSTEMS.items():
            source = windowed if pipeline == "sliding-window-cache" else graph
            g = run_pipeline(source, pipeline, allow_arch_change=True).graph if pipeline else graph
            art = compile_graph(g, Path(tmp) / label.split(" ")[0].replace("(", "_"))
            row = {"kv_bytes_per_token": kv_bytes_per_token(g, None), "runs": {}}
            for context in contexts:
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.long_context", "--steps", str(args.steps),
                     "--measure", str(art), str(context)],
                    capture_output=True, text=True,
                )  # fmt: skip
                if out.returncode:
                    sys.exit(f"{label} at {context} tokens failed:\n{out.stderr[-3000:]}")
                row["runs"][context] = json.loads(out.stdout.strip().splitlines()[-1])
                print(label, context, row["runs"][context], flush=True)
            results["systems"][label] = row
    base = results["systems"][next(iter(SYSTEMS))]
    print(f"\n{params / 1e6:.0f}M params, batch 1, median of {args.steps} decode steps (ONNX, CPU)")
    print(
        f"{'system':<24} {'KV B/token':>10} "
        + " ".join(f"{f'{c}: tok/s x, MiB':>22}" for c in contexts)
    )
    for label, row in results["systems"].items():
        cells = []
        for c in contexts:
            r, b = row["runs"][c], base["runs"][c]
            speed, ratio = 1e3 / r["step_ms"], b["step_ms"] / r["step_ms"]
            cells.append(f"{speed:>7.1f} {ratio:>5.2f}x {r['peak_mib']:>6.0f}")
        print(
            f"{label:<24} {row['kv_bytes_per_token']:>10,} " + " ".join(f"{c:>22}" for c in cells)
        )
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "long_context.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
