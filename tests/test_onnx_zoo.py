"""Tiny zoo models through ONNX (both flavours) match the interpreter, prefill and cached decode.

Default tier: one model per distinct structure (LLaMA GQA, PaLM parallel blocks, BLOOM ALiBi, T5
encoder-decoder, GLM prefix-LM, Mixtral MoE, DeepSeek-v2 MLA, Grok softcap, Nemotron layernorm1p).
Slow tier: all of them.
"""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import lm
from irgraph.codegen.onnx import compile_graph
from irgraph.runtimes.onnx import ORTSession

FAST = [
    "llama-2",
    "palm",
    "bloom",
    "t5",
    "glm-130b",
    "mixtral-8x22b",
    "deepseek-v2",
    "grok-1",
    "nemotron-4",
]


def _check(name: str, tmp_path) -> None:
    graph = zoo.build(name, size="tiny", seed=0)
    rng = np.random.default_rng(0)
    high = min(int(graph.meta.get("vocab_size", 32)), 50)
    ids = rng.integers(1, high, (2, 5))
    kw = {}
    if lm.is_encoder_decoder({n: v.type for n, v in graph.inputs.items()}):
        kw["encoder_ids"] = rng.integers(1, high, (2, 4))
    for flavour in ("ort", "portable"):
        session = ORTSession(compile_graph(graph, tmp_path / f"{name}-{flavour}", flavour=flavour))
        for decode in (False, True):
            ref = lm.interpret(graph, ids, decode=decode, **kw)
            np.testing.assert_allclose(
                session.forward(ids, decode=decode, **kw),
                ref,
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{name} {flavour} decode={decode}",
            )


@pytest.mark.parametrize("name", FAST)
def test_tiny_zoo_model_matches_interpreter(name, tmp_path):
    _check(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(zoo.names()) - set(FAST)))
def test_every_tiny_zoo_model_matches_interpreter(name, tmp_path):
    _check(name, tmp_path)


def test_encoder_decoder_is_two_models_and_encodes_once(tmp_path, monkeypatch):
    from irgraph.runtimes.interpreter import InterpreterSession

    graph = zoo.build("t5", size="tiny", seed=0)
    session = ORTSession(compile_graph(graph, tmp_path / "t5"))
    encoder = session.manifest["onnx"]["encoder"]
    assert encoder["model"] == "encoder.onnx" and encoder["outputs"]
    assert {"encoder.onnx", "model.onnx"} <= set(session.manifest["files"])
    assert "input_ids" not in {
        i.name for i in session.session.get_inputs()
    }  # the decoder never sees the prompt
    calls = []
    run = session.encoder.run
    monkeypatch.setattr(session.encoder, "run", lambda *a: calls.append(1) or run(*a))
    prompts = [[5, 6, 7, 8], [9, 10]]
    assert session.generate(prompts, 5) == InterpreterSession(graph).generate(prompts, 5)
    assert len(calls) == 1


def test_llama_attention_is_one_packed_rotary_gqa_node(tmp_path):
    import onnx

    graph = zoo.build("llama-2", size="tiny", seed=0)  # head_dim 16: GQA's rotary applies
    model = onnx.load(
        str(compile_graph(graph, tmp_path / "l") / "model.onnx"), load_external_data=False
    )
    gqa = [n for n in model.graph.node if n.op_type == "GroupQueryAttention"]
    assert gqa and all(n.input[1] == "" and n.input[2] == "" for n in gqa)  # packed q/k/v
    assert all(any(a.name == "do_rotary" and a.i == 1 for a in n.attribute) for n in gqa)
    assert not [n for n in model.graph.node if n.op_type in ("RotaryEmbedding", "Split")]
