"""gqa-to-mha (exact) and mha-to-gqa (arch-change): KV head counts rewritten, caches with them.

Checked end to end (prefill, then 16 decode steps, each graph with its own cache) on the
hand-built LLaMA and on zoo twins; the full zoo matrix is in the slow tier.
"""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import PassError
from irgraph.analysis import kv_bytes_per_token
from irgraph.passes import compare, run_pipeline
from tests.helpers.handbuilt import HEAD_DIM, HEADS, KV_HEADS, LAYERS, tiny_llama

STEPS = 16


def expanded(g):
    result = run_pipeline(g, "gqa-to-mha", check=True, check_steps=STEPS)
    (record,) = result.records
    assert record.modified and record.max_error is not None and record.max_error <= 1e-5
    return result.graph


def pooled(g, kv_heads: int):
    pipeline = f"mha-to-gqa(kv_heads={kv_heads})"
    return run_pipeline(g, pipeline, allow_arch_change=True).graph


def test_gqa_to_mha_repeats_each_kv_head_for_its_queries():
    g = tiny_llama()
    out = expanded(g)
    text = str(out)
    assert f"past_key_values.0.key: f32[batch, {HEADS}, past, {HEAD_DIM}]" in text
    assert f"shape=[0, 0, {HEADS}, {HEAD_DIM}]" in text
    w, w2 = g.weight("layers.0.k.weight"), out.weight("layers.0.k.weight")
    blocks = w.reshape(KV_HEADS, HEAD_DIM, -1)
    assert np.array_equal(w2, np.repeat(blocks, HEADS // KV_HEADS, axis=0).reshape(w2.shape))
    assert kv_bytes_per_token(out) == kv_bytes_per_token(g) * HEADS // KV_HEADS


def test_mha_to_gqa_mean_pools_and_undoes_the_expansion():
    g = tiny_llama()
    mqa = pooled(g, 1)
    w = g.weight("layers.1.v.weight").reshape(KV_HEADS, HEAD_DIM, -1)
    assert np.allclose(mqa.weight("layers.1.v.weight"), w.mean(axis=0), atol=1e-7)
    assert kv_bytes_per_token(mqa) * KV_HEADS == kv_bytes_per_token(g)
    # expanding to MHA then pooling back to the original groups is the identity
    back = pooled(expanded(g), KV_HEADS)
    for name in g.params:
        assert np.array_equal(back.weight(name), g.weight(name)), name
    assert compare(g, back, mode="end-to-end", steps=4).max_error == 0.0


def test_mha_to_gqa_is_arch_change_and_reports_its_error():
    g = tiny_llama()
    with pytest.raises(PassError, match="allow-arch-change"):
        run_pipeline(g, "mha-to-gqa(kv_heads=1)")
    result = run_pipeline(g, "mha-to-gqa(kv_heads=1)", check=True, allow_arch_change=True)
    (record,) = result.records
    assert record.max_error is not None and record.max_error > 1e-3  # measured, not bounded
    assert f"{LAYERS} layers: KV heads {KV_HEADS} -> 1 (mean-pooled)" in record.note


def test_kv_heads_that_do_not_divide_the_heads_is_one_clear_error():
    with pytest.raises(PassError) as e:
        run_pipeline(tiny_llama(), "mha-to-gqa(kv_heads=3)", allow_arch_change=True)
    text = str(e.value)
    assert "kv_heads=3 does not divide the 4 query heads" in text and "a divisor of 4" in text
    with pytest.raises(PassError, match="option 'kv_heads' of pass mha-to-gqa"):
        run_pipeline(tiny_llama(), "mha-to-gqa(kv_heads=0)", allow_arch_change=True)


def test_latent_attention_is_left_alone_and_says_why():
    g = zoo.build("deepseek-v2")
    for pipeline in ("gqa-to-mha", "mha-to-gqa(kv_heads=1)"):
        (record,) = run_pipeline(g, pipeline, allow_arch_change=True).records
        assert not record.modified and "no cached multi-head attention" in record.note


def test_fused_qkv_is_refused_with_the_reason():
    fused = run_pipeline(tiny_llama(), "fuse-qkv").graph
    (record,) = run_pipeline(fused, "gqa-to-mha").records
    assert not record.modified and "not their own linear (fuse-qkv?)" in record.note


GQA_TWINS = ["llama-2", "starcoder"]  # grouped (2 of 4) and multi-query
SLOW_GQA = [
    "alphacode", "deepseek", "palm", "u-palm", "palm-2", "llama-3.1", "mixtral-8x22b",
    "snowflake-arctic", "grok-1", "nemotron-4",
]  # fmt: skip


@pytest.mark.parametrize(
    "name", [*GQA_TWINS, *(pytest.param(n, marks=pytest.mark.slow) for n in SLOW_GQA)]
)
def test_gqa_to_mha_is_exact_end_to_end_on_zoo_twins(name):
    g = zoo.build(name)
    out = expanded(g)
    cached = [n for n in out.nodes if n.op == "attention" and n.inputs[3] is not None]
    assert cached and all(n.arg(1).type.shape[2] == n.arg(0).type.shape[2] for n in cached)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "gpt-3", "bloom", "t5", "glm-130b", "pangu-alpha"])
def test_mha_to_gqa_then_back_is_exact_on_mha_twins(name):
    g = zoo.build(name)
    heads = next(n.arg(0).type.shape[2] for n in g.nodes if n.op == "attention")
    mqa = pooled(g, 1)
    assert kv_bytes_per_token(mqa) * heads == kv_bytes_per_token(g)
    assert compare(mqa, expanded(mqa), mode="end-to-end", steps=STEPS).max_error <= 1e-5
