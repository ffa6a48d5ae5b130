"""The reference-model recipe: its stated budget, its cache key, and (slow) one end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

import irgraph
from benchmarks.reference_model import cache_dir, llama, recipe, recipe_hash, reference_model


def test_recipe_states_a_small_llama_and_at_least_20m_tokens():
    r = recipe()
    graph = llama(r["model"], seed=0)
    params = sum(int(np.prod(v.type.shape)) for v in graph.params.values())
    assert 2.9e6 <= params <= 8e6
    t = r["train"]
    assert t["steps"] * t["batch_size"] * t["seq_len"] >= 20_000_000
    assert r["corpus"]["files"] > 500  # the whole standard library, tests included
    assert recipe_hash(r) == recipe_hash(recipe()) and recipe_hash(recipe(steps=3)) != recipe_hash(
        r
    )
    assert cache_dir(r).name == recipe_hash(r)


@pytest.mark.slow
def test_reference_run_end_to_end_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("IRGRAPH_CACHE", str(tmp_path))
    out = reference_model(steps=4)
    report = json.loads((out / "report.json").read_text())
    bpb = report["heldout_bits_per_byte"]
    assert bpb["trained"] < bpb["untrained"] and 7.5 < bpb["untrained"] < 8.5
    assert reference_model(steps=4) == out  # second call: the cache, no training
    logits = irgraph.interpret(irgraph.load(out), [list(b"import os\n")])
    assert logits.shape == (1, 10, 256)
