"""The reference trained model: a small LLaMA-style byte-level code LM trained on the Python stdlib.

    .venv/bin/python benchmarks/reference_model.py              # train (or reuse the cache), report
    .venv/bin/python benchmarks/reference_model.py --recipe     # print the recipe and its hash
    from benchmarks.reference_model import reference_model      # in other benchmarks:
    graph_dir = reference_model()                               #   the cached trained graph folder

Quality benchmarks (`benchmarks/parallelize_recovery.py`) measure held-out bits per byte on
this model, so it must be reproducible and cheap to reuse: the recipe below
(model, training, corpus fingerprint) is hashed, and the trained graph is
cached in ~/.cache/irgraph/reference-model/<hash>/ (IRGRAPH_CACHE moves the
root). An interrupted run resumes from its checkpoints. The corpus is every
`*.py` file of the running Python's standard library (site-packages
excluded); 5% of the files, chosen by a hash of their path, are held out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np

from irgraph import Graph
from irgraph.codegen.torch.trainer import TrainConfig, Trainer, bf16_supported, save_trained
from irgraph.model_zoo import config as zoo_config
from irgraph.model_zoo.builder import build_graph
from irgraph.model_zoo.config import RotaryConfig
from irgraph.serialize import is_graph_dir
from irgraph.text import ByteTokenizer, load_corpus
from irgraph.weights import WeightStore

MODEL = {
    "zoo": "llama",
    "init": "normal, residual-scaled",
    "vocab": 256,
    "hidden": 256,
    "layers": 4,
    "heads": 4,
    "ffn": 576,
    "rope_base": 10000.0,
    "norm_eps": 1e-5,
    "init_std": 0.02,
}
TRAIN = {
    "steps": 2450,
    "batch_size": 32,
    "seq_len": 256,
    "lr": 2e-3,
    "min_lr_ratio": 0.1,
    "warmup": 100,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "dropout": 0.0,
    "grad_accum": 1,
    "seed": 0,
    "heldout_fraction": 0.05,
    "eval_every": 500,
    "eval_tokens": 131072,
    "checkpoint_every": 100,
    "compile": True,
}


def stdlib_files() -> tuple[Path, list[Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in root.rglob("*.py")
        if "site-packages" not in p.relative_to(root).parts and p.is_file()
    )
    return root, files


def recipe(steps: int | None = None) -> dict[str, Any]:
    """Everything that determines the trained weights, including a fingerprint of the corpus."""
    root, files = stdlib_files()
    fingerprint = hashlib.sha256(
        "\n".join(f"{p.relative_to(root)}:{p.stat().st_size}" for p in files).encode()
    )
    train = {**TRAIN, **({"steps": steps} if steps else {}), "bf16": bf16_supported()}
    return {
        "model": MODEL,
        "train": train,
        "corpus": {
            "python": platform.python_version(),
            "files": len(files),
            "sha256": fingerprint.hexdigest()[:16],
        },
    }


def recipe_hash(r: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir(r: dict[str, Any]) -> Path:
    root = Path(os.environ.get("IRGRAPH_CACHE", Path.home() / ".cache" / "irgraph"))
    return root / "reference-model" / recipe_hash(r)


def llama(m: dict[str, Any], seed: int) -> Graph:
    """The zoo's LLaMA config at reference size (RMSNorm, rotary, SwiGLU, no biases), zoo-built.

    Weights get a training init instead of the zoo's test init: N(0, init_std) for matrices and
    embeddings, residual output projections scaled by 1/√(2·layers) (GPT-2), norms at 1.
    """
    config = zoo_config(m["zoo"], "published").replace(
        name="stdlib-byte-llama",
        vocab_size=m["vocab"],
        hidden=m["hidden"],
        layers=m["layers"],
        heads=m["heads"],
        ffn=m["ffn"],
        norm_eps=m["norm_eps"],
        rotary=RotaryConfig(base=m["rope_base"]),
    )
    graph = build_graph(config, weights=None)
    rng = np.random.default_rng(seed)
    residual_std = m["init_std"] / math.sqrt(2 * m["layers"])
    arrays = {}
    for name, v in graph.params.items():
        shape = tuple(int(d) for d in v.type.shape)
        if len(shape) == 1:
            arrays[name] = np.ones(shape, np.float32)
        else:
            std = (
                residual_std
                if name.endswith((".attn.o.weight", ".mlp.down.weight"))
                else m["init_std"]
            )
            arrays[name] = (std * rng.standard_normal(shape)).astype(np.float32)
    graph.weights = WeightStore.from_arrays(arrays)
    graph.meta["tokenizer"] = "bytes"
    return graph


def reference_model(steps: int | None = None, log=None) -> Path:
    """The cached trained graph folder, training it first if the cache lacks it."""
    r = recipe(steps)
    out = cache_dir(r)
    if is_graph_dir(out) and (out / "report.json").is_file():
        return out
    config = TrainConfig.from_dict(r["train"])
    graph = llama(r["model"], config.seed)
    root, files = stdlib_files()
    corpus = load_corpus(
        files,
        ByteTokenizer(),
        heldout_fraction=config.heldout_fraction,
        seed=config.seed,
        base=root,
    )
    params = sum(int(np.prod(v.type.shape)) for v in graph.params.values())
    say = log or (lambda *_: None)
    say(
        f"{params / 1e6:.2f}M params; corpus {len(corpus.train):,} train bytes "
        f"({corpus.train_files} files), {len(corpus.heldout):,} held out ({corpus.heldout_files} "
        f"files); {config.steps * config.batch_size * config.seq_len:,} training tokens; cache "
        f"{out}"
    )
    t0 = time.time()

    def on_step(s):
        if s.step % 25 == 0 or s.step == s.steps:
            say(
                f"step {s.step}/{s.steps} loss {s.loss:.4f} lr {s.lr:.2e} {s.tokens_per_s:,.0f} "
                f"tok/s elapsed {time.time() - t0:,.0f}s"
            )

    result = Trainer(graph, corpus, config, out).run(
        on_step=on_step,
        on_eval=lambda e: say(f"eval step {e.step}: {e.bits_per_byte:.4f} bits/byte"),
    )
    report = {
        "recipe": r,
        "recipe_hash": recipe_hash(r),
        "params": params,
        "tokens": config.steps * config.batch_size * config.seq_len,
        "train_seconds_this_run": round(result.seconds, 1),
        "resumed_from": result.resumed_from,
        "tokens_per_s_this_run": round(
            sum(1 for _ in result.history)
            * config.batch_size
            * config.seq_len
            / max(result.seconds, 1e-9)
        ),
        "heldout_bits_per_byte": {
            "untrained": result.evals[0].bits_per_byte,
            "trained": result.evals[-1].bits_per_byte,
        },
        "heldout_files": corpus.heldout_files,
        "heldout_bytes": corpus.heldout_bytes,
    }
    save_trained(out, result, config, {"reference_model": report})
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--recipe", action="store_true", help="print the recipe and its hash, train nothing"
    )
    ap.add_argument(
        "--steps", type=int, help="override the step count (a different recipe, for smoke tests)"
    )
    args = ap.parse_args()
    r = recipe(args.steps)
    if args.recipe:
        print(
            json.dumps({"recipe": r, "hash": recipe_hash(r), "cache": str(cache_dir(r))}, indent=2)
        )
        return
    out = reference_model(args.steps, log=lambda msg: print(msg, flush=True))
    print(json.dumps(json.loads((out / "report.json").read_text()), indent=2))
    print(f"trained graph: {out}")


if __name__ == "__main__":
    sys.exit(main())
