"""What a quantized KV cache costs the trained reference model: held-out bits per byte (issue 16).

    .venv/bin/python -m benchmarks.kv_quant_quality [--eval-tokens 262144] [--check-windows 16]

The reference model (benchmarks/reference_model.py) with each `quantize-kv` setting: int8 and
fp8 (e4m3) caches, one scale per head and token, per token, or per channel (static, calibrated
on 32 windows of the training split). Every variant is scored on the held-out split as
benchmarks/quantization_quality does, with the gap to the float cache and its standard error
over the same windows (`irgraph.heldout.paired_difference`).

Token by token: quantize-kv's attention reads the dequantized cache for every position, the
current token's included, so one prefill call computes what decoding the window through the
quantized cache computes, up to float rounding; but a key computed in a 1-token call can
differ from the prefill's by one float ulp, and near a rounding boundary that moves its int8
value by one step. So `--check-windows` windows are also scored decoding token by token
through the cache, and both figures for them are printed (`decode_bpb` vs `prefill_bpb`, and
the largest logit difference). Writes benchmarks/results/kv_quant_quality.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.quantization_quality import evaluate, split_files
from irgraph import lm
from irgraph.analysis import kv_bytes_per_token
from irgraph.cli.calibration import Calibration
from irgraph.heldout import paired_difference, score_windows, token_windows
from irgraph.passes import PassContext, run_pipeline
from irgraph.serialize import load

CONFIGS = {
    "f32 cache": "",
    "int8 per-head": "quantize-kv(dtype=int8, granularity=per-head)",
    "int8 per-token": "quantize-kv(dtype=int8, granularity=per-token)",
    "int8 per-channel": "quantize-kv(dtype=int8, granularity=per-channel)",
    "fp8 per-head": "quantize-kv(dtype=fp8_e4m3, granularity=per-head)",
    "fp8 per-token": "quantize-kv(dtype=fp8_e4m3, granularity=per-token)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a saved graph folder (default: the reference)")
    ap.add_argument("--eval-seq", type=int, default=256)
    ap.add_argument("--eval-tokens", type=int, default=262144, help="held-out tokens scored")
    ap.add_argument("--check-windows", type=int, default=16, help="also decoded token by token")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "kv_quant_quality.json"
    )
    args = ap.parse_args()
    from benchmarks.reference_model import reference_model

    model = load(args.model or reference_model(log=lambda m: print(m, flush=True)))
    train_files, held_files = split_files()
    texts = tuple(str(f) for f in train_files if f.stat().st_size)
    batches = Calibration(texts, 32, 256, seed=0).batches(None, 256)
    held = np.frombuffer(b"".join(f.read_bytes() for f in held_files), np.uint8)
    windows = token_windows(held.astype(np.int64), args.eval_seq, args.eval_tokens)
    print(f"held out: {windows.shape[0]} windows of {args.eval_seq} bytes", flush=True)
    rows, scores = [], {}
    for name, pipeline in CONFIGS.items():
        t0 = time.perf_counter()
        graph = model
        if pipeline:
            graph = run_pipeline(model, pipeline, ctx=PassContext(calibration=batches)).graph
        scores[name] = evaluate(graph, windows)
        check = windows[: args.check_windows]
        decoded = score_windows(
            lambda ids, g=graph: lm.interpret(g, ids, decode=True), check, bytes_per_token=1.0
        )
        logits = lm.interpret(graph, check[:1, :-1], decode=True)
        row = {
            "cache": name,
            "kv_bytes_per_token": kv_bytes_per_token(graph, None),
            "bits_per_byte": round(scores[name].bits_per_byte, 5),
            "check_prefill_bpb": round(evaluate(graph, check).bits_per_byte, 5),
            "check_decode_bpb": round(decoded.bits_per_byte, 5),
            "decode_vs_prefill_logits": float(
                np.abs(logits - lm.interpret(graph, check[:1, :-1])).max()
            ),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if name != "f32 cache":
            gap, se = paired_difference(scores[name], scores["f32 cache"])
            row |= {"delta": round(gap, 5), "delta_se": round(se, 5)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        f"\n{'cache':<18} {'KV B/token':>10} {'bits/byte':>10} {'Δ vs f32':>18} "
        f"{'check: prefill':>15} {'decode':>8}"
    )
    for r in rows:
        delta = f"{r['delta']:+.5f} ± {r['delta_se']:.5f}" if "delta" in r else ""
        print(
            f"{r['cache']:<18} {r['kv_bytes_per_token']:>10,} {r['bits_per_byte']:>10.4f} "
            f"{delta:>18} {r['check_prefill_bpb']:>15.4f} {r['check_decode_bpb']:>8.4f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"windows": int(windows.shape[0]), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
