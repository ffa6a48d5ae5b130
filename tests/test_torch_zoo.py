"""Every tiny zoo model through the torch backend: equals the interpreter, trains, compiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import irgraph
from irgraph.codegen.torch import numpy_runner, to_torch, torch_feeds
from irgraph.codegen.torch.objective import lm_batch, lm_loss
from irgraph.lm import forward, graph_inputs, is_encoder_decoder
from irgraph.model_zoo import build, names

IDS = np.array([[5, 17, 3, 9, 30, 2]])
ENCODER_IDS = np.array([[7, 1, 12, 4]])


def call_kw(graph) -> dict:
    inputs = graph_inputs(graph)
    kw = {}
    if is_encoder_decoder(inputs):
        kw["encoder_ids"] = ENCODER_IDS
    if "prefix_len" in inputs:
        kw["prefix_len"] = np.array([3])
    return kw


@pytest.mark.parametrize("name", names())
def test_torch_module_equals_interpreter(name):
    graph = build(name, size="tiny", seed=0)
    module = to_torch(graph)
    for decode in (False, True):
        expected = irgraph.interpret(graph, IDS, decode=decode, **call_kw(graph))
        got = forward(
            numpy_runner(module), graph_inputs(graph), IDS, decode=decode, **call_kw(graph)
        )
        # float32 in another summation order: the absolute tolerance follows the logits' scale
        atol = 1e-5 * max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(
            got, expected, rtol=1e-5, atol=atol, err_msg=f"{name} decode={decode}"
        )


@pytest.mark.parametrize("name", names())
def test_gradients_reach_every_parameter(name):
    graph = build(name, size="tiny", seed=0)
    module = to_torch(graph)
    vocab = int(graph.outputs["logits"].type.shape[-1])
    windows = np.random.default_rng(0).integers(0, vocab, (4, 17))
    feeds, targets, weights = lm_batch(graph_inputs(graph), windows, graph.meta)
    lm_loss(
        module(**torch_feeds(feeds))["logits"], torch.from_numpy(targets), torch.from_numpy(weights)
    ).backward()
    missing = [
        n
        for n, p in module.named_parameters()
        if p.grad is None or not bool(p.grad.abs().sum() > 0)
    ]
    assert missing == [], f"{name}: no gradient for {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "mixtral-8x22b", "t5"])
def test_compile_and_export_representative_models(name):
    """One exported program serves prefill (past 0) and cached decode (seq 1), as eager does."""
    from irgraph.codegen.torch.module import export
    from irgraph.lm import empty_cache, make_feeds, present_name

    graph = build(name, size="tiny", seed=0)
    module = to_torch(graph)
    inputs = graph_inputs(graph)
    kw = {"encoder_ids": np.tile(ENCODER_IDS, (2, 1))} if is_encoder_decoder(inputs) else {}

    def feeds(ids, past_len, cache):
        return torch_feeds(make_feeds(inputs, ids, cache, past_len=past_len, **kw))

    ids = np.tile(IDS, (2, 1))
    prefill = feeds(ids[:, :3], 0, empty_cache(inputs, 2))
    with torch.no_grad():
        cache = {n: module(**prefill)[present_name(n)].numpy() for n in empty_cache(inputs, 2)}
    example = feeds(ids[:, 3:5], 3, cache)  # batch 2, seq 2, past 3: no dim is 0 or 1
    program = export(module, example).module()
    compiled = torch.compile(module)
    step = feeds(ids[:, 3:4], 3, cache)  # one cached decode step
    for f in (prefill, step):
        with torch.no_grad():
            eager, fast = module(**f), compiled(**f)
            exported = program(*(f[n] for n in graph.inputs))
        for i, out in enumerate(graph.outputs):
            torch.testing.assert_close(fast[out], eager[out], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(exported[i], eager[out], rtol=1e-5, atol=1e-5)
