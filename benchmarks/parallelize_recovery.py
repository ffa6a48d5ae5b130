"""What `parallelize-blocks` costs a trained model, and what an `irgraph train` fine-tune recovers.

    .venv/bin/python -m benchmarks.parallelize_recovery [MODEL_DIR] [--steps 200] [--corpus PATH]

MODEL_DIR is a trained sequential model saved by `irgraph train` (graph.irg,
weights, train.json with its recipe); by default the reference model
(benchmarks/reference_model.py, trained first if its cache is empty), whose
corpus (the standard library's *.py files) is then used with the same held-out
split (the files are linked into one folder under their stdlib-relative paths,
which is what the split hashes). Three variants are
fine-tuned with the same short recipe, so the parallel models' recovery is
compared with what the same extra training does to the unconverted model:

  sequential           the model as trained (control)
  parallel             parallelize-blocks: MLP norm reads the block input (GPT-NeoX form)
  parallel-shared      parallelize-blocks(share_norm=true): one norm per block (PaLM form)

`irgraph train` evaluates held-out loss before its first step and after its
last, so each run reports the loss right after conversion and after the
fine-tune, on the same held-out windows (same corpus, split, seed and length).
Prints a table and writes benchmarks/results/parallelize_recovery.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from irgraph.passes import run_pipeline
from irgraph.serialize import load, save

VARIANTS = {
    "sequential": "",
    "parallel": "parallelize-blocks",
    "parallel-shared": "parallelize-blocks(share_norm=true)",
}
RECIPE_FLAGS = (
    "batch_size",
    "seq_len",
    "heldout_fraction",
    "eval_tokens",
    "seed",
    "weight_decay",
    "grad_clip",
    "eval_every",
)


def link_reference_corpus(folder: Path) -> Path:
    """The reference model's corpus files, symlinked by stdlib-relative path (same split)."""
    from benchmarks.reference_model import stdlib_files

    root, files = stdlib_files()
    for f in files:
        link = folder / f.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f)
    return folder


def fine_tune(
    source: Path, out: Path, corpus: list[str], recipe: dict, steps: int, lr: float, warmup: int
) -> dict:
    """Run `irgraph train` on `source`; returns its train.json."""
    cmd = [
        str(Path(sys.executable).parent / "irgraph"),
        "train",
        str(source),
        "--steps",
        str(steps),
        "-o",
        str(out),
        "--fresh",
        "--lr",
        str(lr),
        "--warmup",
        str(warmup),
    ]
    for c in corpus:
        cmd += ["--corpus", c]
    for key in RECIPE_FLAGS:
        if key in recipe:
            cmd += ["--" + key.replace("_", "-"), str(recipe[key])]
    if recipe.get("bf16") is not None:
        cmd.append("--bf16" if recipe["bf16"] else "--no-bf16")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"irgraph train failed for {source.name}:\n{done.stderr[-2000:]}")
    return json.loads((out / "train.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "model", type=Path, nargs="?", help="trained model folder (default: the reference model)"
    )
    ap.add_argument("--corpus", action="append", help="default: the reference model's corpus")
    ap.add_argument("--steps", type=int, default=200, help="fine-tune steps per variant")
    ap.add_argument(
        "--lr-scale", type=float, default=0.3, help="fine-tune peak lr as a share of the recipe's"
    )
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, help="fine-tune batch (default: the recipe's)")
    ap.add_argument(
        "--eval-tokens", type=int, help="held-out tokens per evaluation (default: the recipe's)"
    )
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "parallelize_recovery.json"
    )
    args = ap.parse_args()

    if args.model is None:
        from benchmarks.reference_model import reference_model

        args.model = reference_model(log=lambda msg: print(msg, flush=True))
    summary = json.loads((args.model / "train.json").read_text())
    recipe = dict(summary["recipe"])
    recipe.update(
        {k: v for k, v in (("batch_size", args.batch_size), ("eval_tokens", args.eval_tokens)) if v}
    )
    lr = recipe["lr"] * args.lr_scale
    graph = load(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus or [str(link_reference_corpus(Path(tmp) / "corpus"))]
        for name, pipeline in VARIANTS.items():
            src = Path(tmp) / name
            converted = (
                run_pipeline(graph, pipeline, allow_arch_change=True).graph if pipeline else graph
            )
            tokenizer = args.model / "tokenizer.json"
            save(
                converted,
                src,
                extra_files={"tokenizer.json": tokenizer} if tokenizer.is_file() else None,
            )
            t0 = time.perf_counter()
            result = fine_tune(
                src, Path(tmp) / f"{name}-ft", corpus, recipe, args.steps, lr, args.warmup
            )
            first, last = result["evals"][0], result["evals"][-1]
            rows.append(
                {
                    "variant": name,
                    "pipeline": pipeline or "(none)",
                    "loss_converted": first["loss"],
                    "bpb_converted": first["bits_per_byte"],
                    "loss_finetuned": last["loss"],
                    "bpb_finetuned": last["bits_per_byte"],
                    "finetune_steps": args.steps,
                    "finetune_lr": lr,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
    base = rows[0]
    print(
        f"model {args.model} ({graph.name}); fine-tune {args.steps} steps of "
        f"{recipe['batch_size']} x {recipe['seq_len']} tokens at lr {lr:.2e}; held-out "
        f"{recipe['eval_tokens']} tokens"
    )
    print(f"{'variant':<16} {'bpb converted':>14} {'bpb fine-tuned':>15} {'vs sequential ft':>17}")
    for r in rows:
        print(
            f"{r['variant']:<16} {r['bpb_converted']:>14.4f} {r['bpb_finetuned']:>15.4f} "
            f"{r['bpb_finetuned'] - base['bpb_finetuned']:>+17.4f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"model": str(args.model), "recipe": recipe, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
