"""What mha-to-gqa costs a trained model, and what an `irgraph train` fine-tune recovers.

    .venv/bin/python -m benchmarks.gqa_recovery [MODEL_DIR] [--steps 200,1000] [--corpus PATH]

As benchmarks/parallelize_recovery.py (same reference model, corpus, held-out split and
fine-tune recipe), for the KV-head conversion of issue 16 (Ainslie et al. 2023): the
reference model (4 heads, multi-head) converted by mean-pooling its K/V projection heads,
then fine-tuned, with the unconverted model fine-tuned the same way as the control:

  mha (control)   the model as trained
  gqa kv=2        mha-to-gqa(kv_heads=2): two query heads share each KV head
  mqa kv=1        mha-to-gqa(kv_heads=1): multi-query

One `irgraph train` run per variant for the largest step count, evaluated on the
held-out windows before its first step and every `--steps` count; the table shows bits
per byte after conversion and after each count, and the KV bytes per token.
Writes benchmarks/results/gqa_recovery.json.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from benchmarks.parallelize_recovery import fine_tune, link_reference_corpus
from irgraph.analysis import kv_bytes_per_token
from irgraph.passes import run_pipeline
from irgraph.serialize import load, save

VARIANTS = {
    "mha (control)": "",
    "gqa kv=2": "mha-to-gqa(kv_heads=2)",
    "mqa kv=1": "mha-to-gqa(kv_heads=1)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, nargs="?", help="trained model (default: the reference)")
    ap.add_argument("--corpus", action="append", help="default: the reference model's corpus")
    ap.add_argument("--steps", default="200,1000", help="fine-tune step counts to report")
    ap.add_argument(
        "--lr-scale", type=float, default=0.3, help="peak lr as a share of the recipe's"
    )
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, help="fine-tune batch (default: the recipe's)")
    ap.add_argument("--eval-tokens", type=int, help="held-out tokens (default: the recipe's)")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "gqa_recovery.json"
    )
    args = ap.parse_args()
    counts = sorted({int(s) for s in args.steps.split(",")})
    if args.model is None:
        from benchmarks.reference_model import reference_model

        args.model = reference_model(log=lambda msg: print(msg, flush=True))
    recipe = dict(json.loads((args.model / "train.json").read_text())["recipe"])
    recipe.update(
        {k: v for k, v in (("batch_size", args.batch_size), ("eval_tokens", args.eval_tokens)) if v}
    )
    recipe["eval_every"] = math.gcd(*counts)  # an evaluation lands on every reported count
    lr = recipe["lr"] * args.lr_scale
    graph = load(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus or [str(link_reference_corpus(Path(tmp) / "corpus"))]
        for name, pipeline in VARIANTS.items():
            src = Path(tmp) / name.split(" ")[0]
            g = run_pipeline(graph, pipeline, allow_arch_change=True).graph if pipeline else graph
            tokenizer = args.model / "tokenizer.json"
            extra = {"tokenizer.json": tokenizer} if tokenizer.is_file() else None
            save(g, src, extra_files=extra)
            t0 = time.perf_counter()
            result = fine_tune(src, Path(f"{src}-ft"), corpus, recipe, counts[-1], lr, args.warmup)
            by_step = {e["step"]: e["bits_per_byte"] for e in result["evals"]}
            rows.append(
                {
                    "variant": name,
                    "pipeline": pipeline or "(none)",
                    "kv_bytes_per_token": kv_bytes_per_token(g, None),
                    "bpb_converted": result["evals"][0]["bits_per_byte"],
                    "bpb_after": {n: by_step.get(n) for n in counts},
                    "finetune_lr": lr,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
    print(
        f"model {args.model}; fine-tune lr {lr:.2e}, {recipe['batch_size']} x {recipe['seq_len']}"
    )
    header = " ".join(f"{f'after {n}':>10}" for n in counts)
    print(f"{'variant':<14} {'KV B/token':>10} {'converted':>10} {header}  (bits per byte)")
    for r in rows:
        after = " ".join(
            f"{r['bpb_after'][n]:>10.4f}" if r["bpb_after"][n] is not None else f"{'-':>10}"
            for n in counts
        )
        print(
            f"{r['variant']:<14} {r['kv_bytes_per_token']:>10,} {r['bpb_converted']:>10.4f} {after}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"model": str(args.model), "recipe": recipe, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
