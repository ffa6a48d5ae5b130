"""The reference interpreter: symbolic dim binding, IO errors, and the hand-built LLaMA
against Hugging Face's LlamaForCausalLM loaded with the same weights (fp32, <= 1e-5).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import irgraph
from irgraph import GraphBuilder, IRError
from irgraph.interpreter import bind_dims
from tests.helpers.handbuilt import (
    FFN,
    HEAD_DIM,
    HEADS,
    HIDDEN,
    KV_HEADS,
    LAYERS,
    VOCAB,
    tiny_llama,
)

HF_NAMES = {  # handbuilt name -> LlamaForCausalLM name
    "embed.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
    "attn_norm": "input_layernorm",
    "mlp_norm": "post_attention_layernorm",
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.o_proj",
    "gate": "mlp.gate_proj",
    "up": "mlp.up_proj",
    "down": "mlp.down_proj",
}


def hf_name(name: str) -> str:
    if name in HF_NAMES:
        return HF_NAMES[name]
    _, i, role, _ = name.split(".")
    return f"model.layers.{i}.{HF_NAMES[role]}.weight"


@pytest.fixture(scope="module")
def models():
    graph = tiny_llama(seed=3)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        rms_norm_eps=1e-5,
        max_position_embeddings=128,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    hf = transformers.LlamaForCausalLM(config).eval()
    state = {hf_name(n): torch.from_numpy(np.array(graph.weight(n))) for n in graph.params}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m for m in missing)
    return graph, hf


def test_logits_match_transformers_llama(models):
    graph, hf = models
    ids = np.array([[1, 5, 9, 33, 2, 63, 0, 17], [4, 4, 4, 8, 15, 16, 23, 42]])
    with torch.no_grad():
        want = hf(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(irgraph.interpret(graph, ids), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        irgraph.interpret(graph, ids, decode=True), want, rtol=1e-5, atol=1e-5
    )


def test_left_padding_matches_transformers(models):
    graph, hf = models
    ids = np.array([[0, 0, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])
    mask = np.array([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    positions = np.clip(mask.cumsum(1) - 1, 0, None)
    with torch.no_grad():
        want = hf(
            torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            position_ids=torch.from_numpy(positions),
        ).logits.numpy()
    got = irgraph.interpret(graph, ids, mask=mask)
    np.testing.assert_allclose(got[mask == 1], want[mask == 1], rtol=1e-5, atol=1e-5)


def test_cache_outputs_match_transformers(models):
    graph, hf = models
    ids = np.array([[3, 1, 4, 1, 5]])
    feeds = irgraph.lm.make_feeds(
        irgraph.lm.graph_inputs(graph),
        ids,
        irgraph.lm.empty_cache(irgraph.lm.graph_inputs(graph), 1),
        past_len=0,
    )
    out = irgraph.run(graph, feeds)
    with torch.no_grad():
        cache = hf(torch.from_numpy(ids), use_cache=True).past_key_values
    for i in range(LAYERS):
        layer = cache.layers[i]
        np.testing.assert_allclose(
            out[f"present.{i}.key"], layer.keys.numpy(), rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            out[f"present.{i}.value"], layer.values.numpy(), rtol=1e-5, atol=1e-5
        )


def test_bind_dims():
    graph = tiny_llama()
    feeds = irgraph.lm.make_feeds(
        irgraph.lm.graph_inputs(graph),
        np.ones((2, 3), np.int64),
        {
            f"past_key_values.{i}.{kv}": np.zeros((2, 2, 4, 8), np.float32)
            for i in range(2)
            for kv in ("key", "value")
        },
        past_len=4,
    )
    assert bind_dims(graph, feeds) == {"batch": 2, "seq": 3, "past": 4}
    feeds["attention_mask"] = np.ones((2, 6), np.int64)  # past+seq must be 7
    with pytest.raises(
        IRError, match=r"input 'attention_mask': dim past\+seq should be 7 \(got 6\)"
    ):
        irgraph.run(graph, feeds)
    feeds["attention_mask"] = np.ones((3, 7), np.int64)
    with pytest.raises(
        IRError, match="input 'attention_mask': dim batch is 3 here but 2 elsewhere"
    ):
        irgraph.run(graph, feeds)


def one_input_graph():
    b = GraphBuilder("io")
    x = b.input("x", "f32[batch, 4]")
    b.output("y", b.cast(b.scale(x, factor=0.5), dtype="f16"))
    b.output("s", b.reduce_sum(x, axes=[1], keepdims=False))
    return b.build({})


def test_feed_errors():
    g = one_input_graph()
    with pytest.raises(IRError, match="missing inputs: x"):
        irgraph.run(g, {})
    with pytest.raises(IRError, match="unknown inputs: z"):
        irgraph.run(g, {"x": np.zeros((1, 4), np.float32), "z": np.zeros(1)})
    with pytest.raises(
        IRError, match=r"input 'x' has the wrong shape \(expected f32\[batch, 4\], got \[2, 5\]\)"
    ):
        irgraph.run(g, {"x": np.zeros((2, 5), np.float32)})
    with pytest.raises(IRError, match="input 'x' has the wrong rank"):
        irgraph.run(g, {"x": np.zeros(4, np.float32)})


def test_outputs_have_the_declared_dtypes():
    g = one_input_graph()
    x = np.arange(8, dtype=np.float64).reshape(2, 4)  # fed as float64: stored as the declared f32
    out = irgraph.run(g, {"x": x})
    assert out["y"].dtype == np.float16 and out["s"].dtype == np.float32
    np.testing.assert_array_equal(out["y"], (x * 0.5).astype(np.float16))
    np.testing.assert_array_equal(out["s"], x.sum(1))


def prefix_lm(seed: int = 0):
    """One attention layer over a bidirectional prefix (GLM / U-PaLM style)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("prefix-lm")
    ids = b.input("input_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    prefix = b.input("prefix_len", "i64[batch]")
    pk = b.input("past_key_values.0.key", "f32[batch, 2, past, 4]")
    pv = b.input("past_key_values.0.value", "f32[batch, 2, past, 4]")
    weights = {
        "embed": rng.standard_normal((16, 8)).astype(np.float32),
        "head": rng.standard_normal((16, 8)).astype(np.float32),
    }
    x = b.embedding(ids, b.param("embed", "f32[16, 8]"))
    heads = b.reshape(x, shape=[0, 0, 2, 4])
    out, k, v = b.attention(heads, heads, heads, pk, pv, mask, None, prefix)
    b.output("present.0.key", k)
    b.output("present.0.value", v)
    b.output("logits", b.linear(b.reshape(out, shape=[0, 0, 8]), b.param("head", "f32[16, 8]")))
    return b.build(weights)


def test_prefix_lm_decode_runs_the_prefix_in_one_call():
    # The prefix attends bidirectionally, so it cannot be fed token by token: decode
    # processes it whole, then the continuation one token at a time.
    graph, ids = prefix_lm(), np.array([[1, 2, 3, 4, 5, 6]])
    for prefix in (1, 3, 6):
        full = irgraph.interpret(graph, ids, prefix_len=np.array([prefix]))
        decoded = irgraph.interpret(graph, ids, decode=True, prefix_len=np.array([prefix]))
        np.testing.assert_allclose(decoded, full, rtol=1e-5, atol=1e-5)
    default = irgraph.interpret(graph, ids, decode=True)  # default prefix: all of the ids
    np.testing.assert_allclose(
        default, irgraph.interpret(graph, ids, prefix_len=np.array([6])), rtol=1e-5, atol=1e-5
    )


def test_decode_with_padding_mask():
    graph = tiny_llama()
    ids = np.array([[0, 0, 7, 8, 9], [1, 2, 3, 4, 5]])
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    full = irgraph.interpret(graph, ids, mask=mask)
    decoded = irgraph.interpret(graph, ids, mask=mask, decode=True)
    np.testing.assert_allclose(decoded[mask == 1], full[mask == 1], rtol=1e-5, atol=1e-5)
