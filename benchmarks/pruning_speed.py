"""Decode speed of structured pruning: the 125M decode checkpoint pruned, vs dense (issue 17).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.pruning_speed [--threads 1] [--repeats 3]
        [--backends onnx,tvm] [--work DIR]

The model is benchmarks/decode.py's 125M LLaMA checkpoint (random weights, GQA 12 heads over
4 KV heads, FFN 2048, 12 layers; made once under --work, shared with decode.py). It is pruned
as the quality table prunes the reference model: 25% of the attention heads (GQA: one of the
four KV groups, its three query heads with it), 25% of the FFN channels, and a quarter of the
blocks (3 of 12), each by activation importance on 4 windows of 128 random token ids (the
weights are random, so which heads go is arbitrary; what is measured is what the smaller
graph buys). Every variant is compiled to ONNX (ort flavour, f32) and TVM (llvm) and decodes
decode.py's 128-token prompt + 128 new tokens, batch 1, greedy, through the artifact's own
generate loop; the systems take turns for --repeats rounds (so load from other processes hits
them alike) and the table gives median decode tok/s and the ratio to dense on the same
backend, with the parameter count and the weights' bytes. Results go to
benchmarks/results/pruning_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.decode import FULL, ROOT, Bench, load_graph, make_checkpoint

VARIANTS = {  # name -> pipeline
    "dense": "",
    "heads 25%": "prune-heads(fraction=0.25)",
    "ffn 25%": "prune-ffn(fraction=0.25)",
    "drop 3 of 12 blocks": "drop-layers(n=3)",
}
PROMPT = 128


def build(bench: Bench, graph, backend: str, name: str):
    """A session of `graph` compiled for `backend` under bench.work."""
    art = bench.work / "pruning" / f"{backend}-{name.split()[0]}"
    if backend == "onnx":
        from irgraph.codegen.onnx import compile_graph
        from irgraph.runtimes.onnx import ORTSession

        compile_graph(graph, art, flavour="ort", dtype="f32", force=True)
        return ORTSession(art, threads=bench.threads, providers=["CPUExecutionProvider"])
    from irgraph.codegen.tvm.artifact import compile_graph as tvm_compile
    from irgraph.runtimes.tvm import TVMSession

    tvm_compile(graph, art, target="tvm-llvm", force=True)
    return TVMSession(art, threads=bench.threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="onnx,tvm", help="comma-separated: onnx, tvm")
    ap.add_argument("--work", type=Path, default=ROOT.parent / ".cache" / "benchmarks" / "decode")
    args = ap.parse_args()
    backends = [b.strip() for b in args.backends.split(",")]
    if unknown := [b for b in backends if b not in ("onnx", "tvm")]:
        ap.error(f"unknown backend(s) {', '.join(unknown)} (expected: onnx, tvm)")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from irgraph.passes import PassContext, run_pipeline

    work = args.work / "full"
    hf_dir = make_checkpoint(work / "hf", FULL)
    rng = np.random.default_rng(0)
    prompt = rng.integers(3, FULL["vocab_size"], PROMPT).tolist()
    bench = Bench(hf_dir, work, prompt, PROMPT, args.threads, args.repeats)
    ctx = PassContext(calibration=[rng.integers(3, FULL["vocab_size"], (1, 128)) for _ in range(4)])
    dense = load_graph(hf_dir)
    runs, facts = {}, {}
    for name, pipeline in VARIANTS.items():
        t0 = time.perf_counter()
        graph = run_pipeline(dense, pipeline, ctx=ctx, allow_arch_change=True).graph
        params = {n: v.type for n, v in graph.params.items()}
        facts[name] = {
            "params": sum(t.numel() for t in params.values()),
            "weight_mib": sum(t.nbytes() for t in params.values()) / 2**20,
            "prune_s": time.perf_counter() - t0,
        }
        for backend in backends:
            runs[name, backend] = bench.session_run(build(bench, graph, backend, name))
            runs[name, backend]()  # warm up
        print(f"built {name}: {facts[name]}", flush=True)
    samples: dict = {key: [] for key in runs}
    for r in range(args.repeats):
        for key, run in runs.items():
            samples[key].append(run()[1])
            print(f"round {r}: {key[0]} {key[1]}: decode {samples[key][-1]:.1f} tok/s", flush=True)
    tps = {key: statistics.median(v) for key, v in samples.items()}
    print(
        f"\n125M LLaMA (decode.py's checkpoint), {PROMPT} + {PROMPT} tokens, batch 1, "
        f"{args.threads} thread(s), median of {args.repeats} rounds\n"
    )
    head = " | ".join(f"{b} tok/s | {b} x dense" for b in backends)
    rule = "|---|---|---|" + "---|---|" * len(backends)
    print(f"| variant | params | weights MiB | {head} |\n{rule}")
    for name in VARIANTS:
        cells = " | ".join(
            f"{tps[name, b]:.1f} | {tps[name, b] / tps['dense', b]:.2f}x" for b in backends
        )
        f = facts[name]
        print(f"| {name} | {f['params']:,} | {f['weight_mib']:.0f} | {cells} |")
    out = ROOT / "results" / "pruning_speed.json"
    out.parent.mkdir(exist_ok=True)
    record = {
        "threads": args.threads,
        "repeats": args.repeats,
        "variants": {
            name: {**facts[name], **{f"{b}_decode_tps": tps[name, b] for b in backends}}
            for name in VARIANTS
        },
    }
    out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
