"""Per-token decode latency of fused vs unfused parallel-block graphs, on each backend, in one run.

    .venv/bin/python -m benchmarks.fusion [--backends tvm,onnx] [--steps 32] [--rounds 5]
        [--threads 1]

The model is a 134M-parameter parallel-block decoder in GPT-J's form (one
shared layer norm feeding attention and MLP; 12 layers, hidden 768, 12 heads,
MLP 3072, vocab 32000, untied head, random weights). `fuse-parallel-attention` turns its 6
matmuls per block into 2. Both graphs are compiled for each backend; rounds
alternate fused and unfused so drift on a shared machine hits both alike. Each
round prefills a 32-token prompt and times `--steps` single-token decode calls
through the KV cache. Reports the median per-token latency, the ratio
unfused/fused (> 1: fusion is faster) and the largest logit difference between
the two compiled graphs. Both backends get --threads intra-op threads (ORT's
intra-op pool, TVM's pool; docs/onnxruntime.md §3: one thread beats two on
these 2-vCPU machines). Writes benchmarks/results/fusion.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import irgraph.runtimes
from irgraph import GraphBuilder, lm
from irgraph.ir import Graph
from irgraph.passes import run_pipeline

PROMPT = 32


def compile_tvm(graph: Graph, folder: Path) -> None:
    from irgraph.codegen.tvm.artifact import compile_graph

    compile_graph(graph, folder, target="tvm-llvm")


def compile_onnx(graph: Graph, folder: Path) -> None:
    from irgraph.codegen.onnx import compile_graph

    compile_graph(graph, folder, flavour="ort")


COMPILERS: dict[str, Callable[[Graph, Path], None]] = {"onnx": compile_onnx, "tvm": compile_tvm}


def decode_latencies(session, steps: int, seed: int) -> tuple[list[float], np.ndarray]:
    """Per-token seconds of `steps` cached decode calls after a prompt; and the last logits."""
    rng = np.random.default_rng(seed)
    vocab = int(session.meta.get("vocab_size", 1000))
    ids = rng.integers(0, vocab, size=(1, PROMPT))
    cache = lm.empty_cache(session.inputs, 1)
    out = session.run(lm.make_feeds(session.inputs, ids, cache, past_len=0))
    cache = {n: out[lm.present_name(n)] for n in cache}
    token = np.array([[int(out["logits"][0, -1].argmax())]])
    times = []
    for t in range(steps):
        feeds = lm.make_feeds(session.inputs, token, cache, past_len=PROMPT + t)
        t0 = time.perf_counter()
        out = session.run(feeds)
        times.append(time.perf_counter() - t0)
        cache = {n: out[lm.present_name(n)] for n in cache}
        token = np.array([[int(out["logits"][0, -1].argmax())]])
    return times, out["logits"]


DIMS = {"vocab": 32000, "hidden": 768, "layers": 12, "heads": 12, "ffn": 3072, "rotary_dim": 64}


def model(d: dict[str, int] = DIMS, seed: int = 0) -> Graph:
    """GPT-J-form parallel block: x + Attn(LN(x)) + MLP(LN(x)); rotary, biased gelu MLP."""
    rng = np.random.default_rng(seed)
    hidden, heads = d["hidden"], d["heads"]
    hd = hidden // heads
    b = GraphBuilder("parallel-134m", meta={"vocab_size": d["vocab"]})
    ids = b.input("input_ids", "i64[batch, seq]")
    pos = b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    weights: dict[str, np.ndarray] = {}

    def param(name: str, *shape: int, std: float = 0.02, mean: float = 0.0):
        weights[name] = (mean + std * rng.standard_normal(shape)).astype(np.float32)
        return b.param(name, f"f32[{', '.join(map(str, shape))}]")

    x = b.embedding(ids, param("embed.weight", d["vocab"], hidden))
    for i in range(d["layers"]):
        p = f"layers.{i}."
        h = b.layer_norm(x, param(p + "ln.weight", hidden, mean=1.0), param(p + "ln.bias", hidden))
        q, k, v = (
            b.reshape(
                b.linear(h, param(p + f"attn.{n}.weight", hidden, hidden)), shape=[0, 0, heads, hd]
            )
            for n in "qkv"
        )  # (B, T, nh, hs)
        past_k = b.input(f"past_key_values.{i}.key", f"f32[batch, {heads}, past, {hd}]")
        past_v = b.input(f"past_key_values.{i}.value", f"f32[batch, {heads}, past, {hd}]")
        rot = {"rotary_dim": d["rotary_dim"], "interleaved": True}
        out, pk, pv = b.attention(
            b.rotary(q, pos, **rot), b.rotary(k, pos, **rot), v, past_k, past_v, mask
        )
        b.output(f"present.{i}.key", pk)
        b.output(f"present.{i}.value", pv)
        attn = b.linear(
            b.reshape(out, shape=[0, 0, hidden]), param(p + "attn.o.weight", hidden, hidden)
        )
        up = b.linear(
            h, param(p + "mlp.up.weight", d["ffn"], hidden), param(p + "mlp.up.bias", d["ffn"])
        )
        mlp = b.linear(
            b.gelu(up, approximate="tanh"),
            param(p + "mlp.down.weight", hidden, d["ffn"]),
            param(p + "mlp.down.bias", hidden),
        )
        x = b.add(b.add(x, attn), mlp)
    x = b.layer_norm(
        x, param("final_norm.weight", hidden, mean=1.0), param("final_norm.bias", hidden)
    )
    b.output("logits", b.linear(x, param("lm_head.weight", d["vocab"], hidden)))
    return b.build(weights)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default=",".join(COMPILERS))
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for every backend")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fusion.json")
    args = ap.parse_args()
    os.environ["IRGRAPH_ORT_THREADS"] = os.environ["TVM_NUM_THREADS"] = str(
        args.threads
    )  # read at session open

    unfused = model()
    passes = run_pipeline(unfused, "fuse-parallel-attention")
    fused = passes.graph
    matmuls = {
        name: sum(n.op in ("linear", "matmul") for n in g.nodes)
        for name, g in (("unfused", unfused), ("fused", fused))
    }
    results = {
        "machine": platform.processor() or platform.machine(),
        "model": unfused.name,
        "matmuls": matmuls,
        "threads": args.threads,
        "prompt": PROMPT,
        "steps": args.steps,
        "rounds": args.rounds,
        "backends": {},
    }
    print(
        f"{unfused.name}: {matmuls['unfused']} -> {matmuls['fused']} matmuls; decode {args.steps} "
        f"tokens after a {PROMPT}-token prompt, {args.rounds} alternating rounds"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            sessions = {}
            for name, g in (("unfused", unfused), ("fused", fused)):
                folder = Path(tmp) / f"{backend}-{name}"
                t0 = time.perf_counter()
                COMPILERS[backend](g, folder)
                sessions[name] = irgraph.runtimes.open(folder)
                print(f"  {backend} {name}: compiled in {time.perf_counter() - t0:.1f} s")
            per_token: dict[str, list[float]] = {"unfused": [], "fused": []}
            last: dict[str, np.ndarray] = {}
            decode_latencies(sessions["unfused"], 2, 0)  # warm up both
            decode_latencies(sessions["fused"], 2, 0)
            for r in range(args.rounds):
                for name in ("unfused", "fused") if r % 2 == 0 else ("fused", "unfused"):
                    times, last[name] = decode_latencies(sessions[name], args.steps, r)
                    per_token[name].extend(times)
            med = {n: statistics.median(v) * 1e3 for n, v in per_token.items()}
            diff = float(np.abs(last["fused"] - last["unfused"]).max())
            results["backends"][backend] = {
                "median_ms_per_token": med,
                "ratio_unfused_over_fused": med["unfused"] / med["fused"],
                "max_logit_diff": diff,
            }
            print(
                f"  {backend}: unfused {med['unfused']:.2f} ms/token, fused {med['fused']:.2f} "
                f"ms/token, ratio {med['unfused'] / med['fused']:.3f}, max logit diff {diff:.2e}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
