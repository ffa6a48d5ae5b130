"""Per-layer attention kinds (issue 18 item 4): dense | local(band) | strided(stride), cycled over
the layers. GPT-3's alternating dense and banded layers against transformers' GPT-Neo (the one
transformers model that alternates global and local layers), and the GPT-3 twin through ONNX and
TVM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import irgraph.model_zoo as zoo
from irgraph import lm
from irgraph.codegen.onnx import compile_graph as compile_onnx
from irgraph.codegen.tvm.artifact import compile_graph as compile_tvm
from irgraph.errors import ConfigError
from irgraph.model_zoo.config import (
    Activation,
    AttentionKind,
    LayerAttention,
    ModelConfig,
    Position,
)
from irgraph.runtimes.onnx import ORTSession
from irgraph.runtimes.tvm import TVMSession

IDS = np.array(
    [[5, 17, 99, 200, 3, 42, 7, 8, 250, 1, 64, 33], [9, 1, 14, 77, 3, 5, 2, 180, 6, 40, 8, 2]]
)
BAND = 4

# GPT-Neo's layer: pre-LN, learned positions, gelu_new MLP of 4d with biases, q/k/v without bias,
# out_proj with bias, tied head, and no 1/sqrt(head_dim) on the scores.
NEO = ModelConfig(
    name="neo-like",
    vocab_size=256,
    hidden=64,
    layers=2,
    heads=4,
    ffn=256,
    position=Position.LEARNED,
    max_position=64,
    activation=Activation.GELU_TANH,
    out_bias=True,
    mlp_bias=True,
    tied_embeddings=True,
    attn_scale=1.0,
    attention_pattern=(LayerAttention(), LayerAttention(AttentionKind.LOCAL, BAND)),
)


def _neo_reference(graph) -> transformers.GPTNeoForCausalLM:
    config = transformers.GPTNeoConfig(
        vocab_size=256,
        max_position_embeddings=64,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        attention_types=[[["global", "local"], 1]],
        window_size=BAND,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        embed_dropout=0.0,
        attention_dropout=0.0,
        resid_dropout=0.0,
    )
    model = transformers.GPTNeoForCausalLM(config).eval()
    names = {
        "transformer.wte.weight": "embed.weight",
        "transformer.wpe.weight": "embed_positions.weight",
        "transformer.ln_f.weight": "norm.weight",
        "transformer.ln_f.bias": "norm.bias",
        "lm_head.weight": "embed.weight",
    }
    for i in range(2):
        hf, ours = f"transformer.h.{i}", f"layers.{i}"
        for a, b in (("ln_1", "attn_norm"), ("ln_2", "mlp_norm"), ("mlp.c_fc", "mlp.up")):
            names |= {f"{hf}.{a}.{p}": f"{ours}.{b}.{p}" for p in ("weight", "bias")}
        names |= {f"{hf}.mlp.c_proj.{p}": f"{ours}.mlp.down.{p}" for p in ("weight", "bias")}
        for a, b in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")):
            names[f"{hf}.attn.attention.{a}.weight"] = f"{ours}.attn.{b}.weight"
        names |= {
            f"{hf}.attn.attention.out_proj.{p}": f"{ours}.attn.o.{p}" for p in ("weight", "bias")
        }
    state = {k: v for k, v in model.state_dict().items() if "attn.attention.bias" not in k}
    assert set(state) == set(names), set(state) ^ set(names)
    model.load_state_dict(
        {hf: torch.from_numpy(graph.weight(ours)) for hf, ours in names.items()}, strict=False
    )
    return model


def test_gpt3_alternates_dense_and_banded_layers():
    published, tiny = zoo.config("gpt-3", "published"), zoo.config("gpt-3", "tiny")
    assert [published.layer_mask(i) for i in range(4)] == [(0, 0), (128, 0)] * 2
    assert [tiny.layer_mask(i) for i in range(2)] == [(0, 0), (BAND, 0)]
    windows = [n.attrs["window"] for n in zoo.build("gpt-3").nodes if n.op == "attention"]
    assert windows == [0, BAND]
    assert zoo.config("hyperclova", "published").attention_pattern == ()  # dense, per its paper


def test_matches_gpt_neo_prefill_and_cached_decode():
    graph = zoo.build_graph(NEO)
    model = _neo_reference(graph)
    ids = torch.from_numpy(IDS)
    with torch.no_grad():
        full = model(ids).logits.numpy()
        steps, past = [], None
        for t in range(IDS.shape[1]):
            out = model(ids[:, t : t + 1], past_key_values=past, use_cache=True)
            steps.append(out.logits.numpy())
            past = out.past_key_values
    np.testing.assert_allclose(lm.interpret(graph, IDS), full, atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        lm.interpret(graph, IDS, decode=True), np.concatenate(steps, axis=1), atol=1e-5, rtol=0
    )
    dense = zoo.build_graph(NEO.replace(attention_pattern=()))  # the band changes the answer
    assert np.abs(lm.interpret(dense, IDS) - full).max() > 1e-2


@pytest.mark.parametrize(
    "pattern",
    [
        (LayerAttention(), LayerAttention(AttentionKind.LOCAL, 4)),
        (LayerAttention(AttentionKind.STRIDED, 3), LayerAttention(AttentionKind.LOCAL, 3)),
    ],
    ids=["dense-local", "strided-local"],
)
def test_backends_match_the_interpreter(pattern, tmp_path):
    graph = zoo.build_graph(zoo.config("gpt-3", "tiny").replace(attention_pattern=pattern))
    ref = {d: lm.interpret(graph, IDS, decode=d) for d in (False, True)}
    sessions = {
        f"onnx-{f}": ORTSession(compile_onnx(graph, tmp_path / f, flavour=f))
        for f in ("ort", "portable")
    }
    sessions["tvm-llvm"] = TVMSession(compile_tvm(graph, tmp_path / "tvm", target="tvm-llvm"))
    for name, session in sessions.items():
        for decode, expected in ref.items():
            np.testing.assert_allclose(
                session.forward(IDS, decode=decode),
                expected,
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{name} decode={decode}",
            )


def test_bad_patterns_name_the_field():
    with pytest.raises(ConfigError, match=r"attention_pattern\[1\].span"):
        NEO.replace(
            attention_pattern=(LayerAttention(), LayerAttention(AttentionKind.LOCAL))
        ).validate()
    with pytest.raises(ConfigError, match="sliding_window"):
        NEO.replace(sliding_window=8).validate()
    plain = NEO.to_dict()
    assert plain["attention_pattern"] == [
        {"kind": "dense", "span": 0},
        {"kind": "local", "span": BAND},
    ]
    assert ModelConfig.from_dict(plain) == NEO
    with pytest.raises(ConfigError, match="bad value for kind"):
        ModelConfig.from_dict(plain | {"attention_pattern": [{"kind": "banded", "span": 4}]})
    with pytest.raises(ConfigError, match="attention_pattern"):
        ModelConfig.from_dict(plain | {"attention_pattern": "dense,local"})
