"""absorb-latent: latent attention as attention over the one latent cache (W_k, W_v folded).

Exact against the materialised definition through the end-to-end check (prefill + 16
decode steps, each graph with its own cache); the cache and KV bytes per token unchanged;
a no-op that says so on graphs without latent attention.
"""

from __future__ import annotations

import numpy as np

import irgraph.model_zoo as zoo
from irgraph.analysis import kv_bytes_per_token
from irgraph.codegen.lowering import legalize
from irgraph.lm import interpret
from irgraph.passes import run_pipeline


def absorbed(g):
    for mode in ("end-to-end", "random-io"):  # own caches over 16 steps; random shared caches
        result = run_pipeline(g, "absorb-latent", check=True, check_mode=mode, check_steps=16)
        (record,) = result.records
        assert record.modified and record.max_error is not None and record.max_error <= 1e-5
    return result.graph


def test_absorbed_deepseek_v2_is_exact_and_keeps_one_latent_cache():
    g = zoo.build("deepseek-v2")
    out = absorbed(g)
    assert not [n for n in out.nodes if n.op == "latent_attention"]
    assert out.inputs.keys() == g.inputs.keys() and out.outputs.keys() == g.outputs.keys()
    assert [out.inputs[n].type for n in out.inputs] == [g.inputs[n].type for n in g.inputs]
    assert kv_bytes_per_token(out) == kv_bytes_per_token(g)
    text = str(out)
    # one KV head for every query head: keys are the cache rows, values a slice of them
    assert "= attention(" in text and "kv_b.w_k" in text and "kv_b.w_v_t" in text
    attn = next(n for n in out.nodes if n.op == "attention")
    q, k, v = (attn.arg(i).type.shape for i in range(3))
    assert k[2] == v[2] == 1 and q[3] == k[3] and v[3] < k[3] and attn.inputs[3] is None
    ids = np.random.default_rng(3).integers(0, 256, size=(2, 9))
    ref = interpret(g, ids, decode=True)
    np.testing.assert_allclose(interpret(out, ids, decode=True), ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(interpret(out, ids), ref, atol=1e-5, rtol=1e-5)


def test_absorbing_w_k_and_w_v_splits_kv_b_per_head():
    g = zoo.build("deepseek-v2")
    out = absorbed(g)
    node = next(n for n in g.nodes if n.op == "latent_attention")
    name = node.arg(3).param
    nope, dv = node.attrs["nope_dim"], node.attrs["v_dim"]
    heads = node.arg(0).type.shape[2]
    w = g.weight(name).reshape(heads, nope + dv, -1)
    stem = name.removesuffix(".weight")
    assert np.array_equal(out.weight(f"{stem}.w_k"), w[:, :nope])
    assert np.array_equal(out.weight(f"{stem}.w_v_t"), np.transpose(w[:, nope:], (0, 2, 1)))
    assert name not in out.params


def test_graphs_without_latent_attention_are_unchanged_and_told_so():
    g = zoo.build("llama-2")
    (record,) = run_pipeline(g, "absorb-latent").records
    assert not record.modified and record.note == "the graph has no latent attention"
    assert (
        "unchanged: the graph has no latent attention" in run_pipeline(g, "absorb-latent").table()
    )


def test_backends_lower_the_absorbed_form():
    g = zoo.build("deepseek-v2")
    ops = {n.op for n in legalize(g).nodes}
    assert "latent_attention" not in ops and "attention" in ops
    llama = zoo.build("llama-2")
    assert legalize(llama) is llama
