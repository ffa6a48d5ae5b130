"""sliding-window-cache: windowed attention over a ring of `window` slots, exact vs the unbounded
cache on sequences much longer than the window, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import IRError, PassError
from irgraph.analysis import cost, kv_bytes_per_token
from irgraph.kvcache import contract_of, manifest_entry
from irgraph.lm import graph_inputs, interpret
from irgraph.passes import run_pipeline
from irgraph.runtimes.interpreter import InterpreterSession
from tests.helpers.handbuilt import tiny_llama

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13]]  # left-padded together


def ringed(g):
    result = run_pipeline(g, "sliding-window-cache", check=True, check_steps=16)
    (record,) = result.records
    assert record.modified and record.max_error is not None and record.max_error <= 1e-5
    return result.graph


@pytest.fixture(scope="module")
def mistral(tmp_path_factory):
    """A tiny HF Mistral (sliding_window 3), imported: (transformers model, graph)."""
    from irgraph.model_zoo.hf_import import import_hf
    from tests.helpers.hf_tiny import make_model, save_model

    model = make_model("mistral")
    return model, import_hf(save_model(model, tmp_path_factory.mktemp("hf") / "mistral"))


def test_hf_mistral_ring_equals_transformers_and_the_unbounded_cache(mistral):
    from tests.helpers.hf_tiny import hf_logits

    model, g = mistral
    window = model.config.sliding_window
    ring = ringed(g)
    key = ring.inputs["past_key_values.0.key"].type
    assert key.shape[2] == window and str(key.shape[0]) == "batch"
    assert contract_of(ring.meta).storage == "ring" and contract_of(ring.meta).window == window
    ids = np.random.default_rng(0).integers(0, 256, size=(1, 8 * window))  # 8x the window
    ours = interpret(ring, ids, decode=True)
    np.testing.assert_allclose(ours, interpret(g, ids, decode=True), atol=1e-5)
    np.testing.assert_allclose(ours, hf_logits(model, ids, decode=True), atol=1e-4)
    assert cost(ring).kv_max_tokens == window
    assert kv_bytes_per_token(ring, None) == kv_bytes_per_token(g, None)
    entry = manifest_entry(ring.meta, graph_inputs(ring))
    assert (entry["storage"], entry["window"]) == ("ring", window)


def test_the_cache_stops_growing_and_generation_is_unchanged(mistral):
    _, g = mistral
    ring = ringed(g)
    session = InterpreterSession(ring)
    steps = []
    original = session.step
    session.step = lambda feeds: steps.append(original(feeds)) or steps[-1]  # type: ignore[method-assign]
    assert session.generate(PROMPTS, 12) == InterpreterSession(g).generate(PROMPTS, 12)
    shapes = {tuple(np.shape(cache["past_key_values.1.value"])) for _, cache in steps}
    assert shapes == {(2, 2, 3, 8)}  # [batch, kv_heads, window, head_dim] at every step


def test_gpt3_banded_layers_get_rings_and_dense_layers_keep_growing(tmp_path):
    """The zoo's windowed twin: GPT-3 alternates dense and locally banded layers."""
    from irgraph.analysis import kv_max_tokens
    from irgraph.codegen.tvm import compile_graph
    from irgraph.runtimes.tvm import TVMSession

    g = zoo.build("gpt-3")
    ring = ringed(g)
    shapes = [str(v.type) for n, v in ring.inputs.items() if n.startswith("past_key_values")]
    assert shapes[0] == "f32[batch, 4, past, 16]" and shapes[2] == "f32[batch, 4, 4, 16]"
    assert kv_max_tokens(ring) is None  # the dense layer still grows
    assert InterpreterSession(ring).generate(PROMPTS, 10) == InterpreterSession(g).generate(
        PROMPTS, 10
    )
    session = TVMSession(compile_graph(ring, tmp_path / "tvm"))  # past and a fixed ring at once
    ids = np.random.default_rng(2).integers(0, 256, size=(2, 12))
    np.testing.assert_allclose(
        session.forward(ids, decode=True), interpret(ring, ids, decode=True), atol=1e-4
    )


@pytest.mark.parametrize("target", ["onnx-ort", "onnx-portable", "tvm"])
def test_backends_match_the_interpreter(mistral, target, tmp_path):
    _, g = mistral
    ring = ringed(g)
    if target == "tvm":
        from irgraph.codegen.tvm import compile_graph
        from irgraph.runtimes.tvm import TVMSession as Session

        session = Session(compile_graph(ring, tmp_path / "a"))
    else:
        from irgraph.codegen.onnx import compile_graph
        from irgraph.runtimes.onnx import ORTSession as Session

        session = Session(compile_graph(ring, tmp_path / "a", flavour=target.split("-")[1]))
    ids = np.random.default_rng(1).integers(0, 256, size=(2, 13))
    for decode in (False, True):
        np.testing.assert_allclose(
            session.forward(ids, decode=decode), interpret(ring, ids, decode=decode), atol=1e-4
        )
    assert session.generate(PROMPTS, 9) == InterpreterSession(ring).generate(PROMPTS, 9)


def test_graphs_it_does_not_apply_to_say_why():
    (record,) = run_pipeline(tiny_llama(), "sliding-window-cache").records
    assert not record.modified and "no cached attention has a window" in record.note


def test_a_ring_needs_a_positive_window():
    from irgraph import GraphBuilder

    b = GraphBuilder("ring")
    x = b.input("q", "f32[1, 2, 2, 4]")
    cache = b.input("c", "f32[1, 2, 0, 4]")
    mask = b.input("m", "i64[1, 2]")
    with pytest.raises(IRError, match="ring_attention needs a window > 0"):
        b.op("ring_attention", x, x, x, cache, cache, mask, window=0)
    with pytest.raises(IRError, match="a ring cache needs window > 0"):
        contract_of({"kv_cache_storage": "ring", "kv_cache_window": 0})
    with pytest.raises(IRError, match="attention window must be >= 0"):
        b.op("attention", x, x, x, window=-1)
    import dataclasses

    from irgraph import ConfigError
    from irgraph.model_zoo import build_graph

    windowed = dataclasses.replace(zoo.config("llama-2", "tiny"), sliding_window=-3)
    with pytest.raises(ConfigError, match="sliding_window: a window of at least 1 token"):
        build_graph(windowed)


def test_a_quantized_cache_is_bounded_first(mistral):
    _, g = mistral
    q = run_pipeline(g, "quantize-kv").graph
    (record,) = run_pipeline(q, "sliding-window-cache").records
    assert not record.modified and "run sliding-window-cache first" in record.note
    bsnh = run_pipeline(g, "kv-layout(layout=bsnh)").graph
    with pytest.raises(PassError, match="rewrites a concat bnsh cache"):
        run_pipeline(bsnh, "sliding-window-cache")
