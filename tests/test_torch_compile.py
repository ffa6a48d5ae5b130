"""torch.compile and torch.export of the torch module (slow tier: compiling takes long on CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irgraph.codegen.torch import to_torch, torch_feeds
from irgraph.codegen.torch.attention import unpadded_self_attention
from irgraph.codegen.torch.module import export
from irgraph.lm import empty_cache, graph_inputs, make_feeds
from tests.helpers.handbuilt import tiny_llama
from tests.helpers.torch_graphs import kitchen_sink

pytestmark = pytest.mark.slow


def prefill_feeds(graph, batch=2, seq=6, seed=0):
    inputs = graph_inputs(graph)
    ids = np.random.default_rng(seed).integers(0, 40, (batch, seq))
    kw = {"prefix_len": np.array([2, 4])[:batch]} if "prefix_len" in inputs else {}
    return torch_feeds(make_feeds(inputs, ids, empty_cache(inputs, batch), past_len=0, **kw))


@pytest.mark.parametrize("build", [tiny_llama, kitchen_sink])
def test_compiled_module_matches_eager_and_trains(build):
    graph = build()
    module = to_torch(graph)
    compiled = torch.compile(module)
    feeds = prefill_feeds(graph)
    eager = module(**feeds)
    got = compiled(**feeds)
    for name in graph.outputs:
        torch.testing.assert_close(got[name], eager[name], rtol=1e-5, atol=1e-5)
    with unpadded_self_attention():
        loss = compiled(**feeds)["logits"].square().mean()
    loss.backward()
    assert all(p.grad is not None for p in module.parameters())


def test_export_kitchen_sink_decodes_like_eager():
    graph = kitchen_sink()
    module = to_torch(graph)
    inputs = graph_inputs(graph)
    rng = np.random.default_rng(1)

    def feeds(batch, seq, past):
        cache = {
            n: rng.standard_normal(t.concrete({"batch": batch, "past": past})).astype(np.float32)
            for n, t in inputs.items()
            if n.startswith("past_key_values.")
        }
        return torch_feeds(
            make_feeds(
                inputs,
                rng.integers(0, 40, (batch, seq)),
                cache,
                past_len=past,
                prefix_len=np.full((batch,), 2),
            )
        )

    program = export(module, feeds(2, 3, 4)).module()
    for shape in [(3, 5, 7), (1, 1, 6)]:
        f = feeds(*shape)
        got = program(*(f[n] for n in graph.inputs))
        expected = module(**f)
        for name, t in zip(graph.outputs, got):
            torch.testing.assert_close(t, expected[name], rtol=1e-5, atol=1e-5)
