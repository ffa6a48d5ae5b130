"""Write ref.npz beside each artifact: fixed token ids and the interpreter's prefill/decode logits.

usage: python make_refs.py ARTIFACT_DIR...   (folders that already have ref.npz are skipped)
"""

import json
import sys
from pathlib import Path

import numpy as np

import irgraph
from irgraph import lm


def make_ref(folder: Path) -> None:
    vocab = json.loads((folder / "manifest.json").read_text())["meta"]["vocab_size"]
    graph = irgraph.load(folder)
    rng = np.random.default_rng(1234)
    ids = rng.integers(3, vocab, size=(2, 8)).astype(np.int64)
    kw, extra = {}, {}
    if lm.is_encoder_decoder(lm.graph_inputs(graph)):
        enc = rng.integers(3, vocab, size=(2, 6)).astype(np.int64)
        kw["encoder_ids"] = extra["enc_ids"] = enc
    pre = lm.interpret(graph, ids, decode=False, **kw).astype(np.float32)
    dec = lm.interpret(graph, ids, decode=True, **kw).astype(np.float32)
    np.savez(folder / "ref.npz", ids=ids, prefill=pre, decode=dec, **extra)
    print(folder.name, pre.shape, "prefill-decode max diff", float(np.abs(pre - dec).max()))


if __name__ == "__main__":
    for folder in map(Path, sys.argv[1:]):
        if (folder / "manifest.json").exists() and not (folder / "ref.npz").exists():
            make_ref(folder)
