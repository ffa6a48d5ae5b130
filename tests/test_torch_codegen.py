"""The torch module equals the interpreter (prefill, decode), trains, exports, returns weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import irgraph
from irgraph import CodegenError
from irgraph.codegen.torch import numpy_runner, to_torch, torch_feeds, with_weights
from irgraph.codegen.torch.module import export
from irgraph.lm import forward, graph_inputs, make_feeds
from tests.helpers.handbuilt import tiny_llama
from tests.helpers.torch_graphs import kitchen_sink

IDS = np.array([[1, 5, 9, 3, 7, 2, 11, 4], [3, 4, 5, 6, 7, 8, 9, 10]])


def torch_logits(graph, module, ids, **kw):
    return forward(numpy_runner(module), graph_inputs(graph), ids, **kw)


@pytest.mark.parametrize("build", [tiny_llama, kitchen_sink])
@pytest.mark.parametrize("decode", [False, True])
def test_module_equals_interpreter(build, decode):
    graph = build()
    kw = {"prefix_len": np.array([3, 5])} if "prefix_len" in graph.inputs else {}
    expected = irgraph.interpret(graph, IDS, decode=decode, **kw)
    got = torch_logits(graph, to_torch(graph), IDS, decode=decode, **kw)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_padding_mask_matches_interpreter():
    graph = kitchen_sink()
    mask = np.ones(IDS.shape, dtype=np.int64)
    mask[1, :3] = 0  # left padding
    kw = {"mask": mask, "prefix_len": np.array([4, 6])}
    np.testing.assert_allclose(
        torch_logits(graph, to_torch(graph), IDS, **kw),
        irgraph.interpret(graph, IDS, **kw),
        rtol=1e-5,
        atol=1e-5,
    )


def test_parameters_carry_ir_names_and_every_one_gets_a_gradient():
    graph = kitchen_sink()
    module = to_torch(graph)
    assert sorted(module.state_dict()) == sorted(graph.params)
    feeds = make_feeds(graph_inputs(graph), IDS, {}, past_len=0, prefix_len=np.array([3, 5]))
    feeds.update(
        {
            n: np.zeros((2, *t.concrete({"batch": 2, "past": 0})[1:]), np.float32)
            for n, t in graph_inputs(graph).items()
            if n.startswith("past_key_values.")
        }
    )
    logits = module(**torch_feeds(feeds))["logits"]
    torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), torch.from_numpy(IDS[:, 1:]).reshape(-1)
    ).backward()
    no_grad = [
        n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert no_grad == []  # includes the MoE routers (through the kept weights) and MLA's kv_b


def test_weights_come_back_under_the_same_names(tmp_path):
    graph = tiny_llama()
    module = to_torch(graph)
    with torch.no_grad():
        module.weight("layers.1.q.weight").mul_(2)
    trained = with_weights(graph, module)
    np.testing.assert_array_equal(
        trained.weight("layers.1.q.weight"), 2 * graph.weight("layers.1.q.weight")
    )
    np.testing.assert_array_equal(trained.weight("embed.weight"), graph.weight("embed.weight"))
    trained.save(tmp_path / "g")
    loaded = irgraph.load(tmp_path / "g")
    np.testing.assert_allclose(
        irgraph.interpret(loaded, IDS), torch_logits(graph, module, IDS), rtol=1e-5, atol=1e-5
    )
    state = module.state_dict()
    del state["norm.weight"]
    with pytest.raises(CodegenError, match="norm.weight"):
        with_weights(graph, state)


def test_torch_export_tiny_llama_serves_prefill_and_decode():
    graph = tiny_llama()
    module = to_torch(graph)
    inputs = graph_inputs(graph)
    rng = np.random.default_rng(0)

    def feeds(batch, seq, past):
        cache = {
            n: rng.standard_normal((batch, 2, past, 8)).astype(np.float32)
            for n in inputs
            if "past" in n
        }
        return torch_feeds(
            make_feeds(inputs, rng.integers(0, 64, (batch, seq)), cache, past_len=past)
        )

    program = export(module, feeds(2, 3, 4)).module()
    for shape in [(3, 5, 7), (1, 1, 6), (1, 4, 0)]:
        f = feeds(*shape)
        got = program(*(f[n] for n in graph.inputs))
        expected = module(**f)
        for name, t in zip(graph.outputs, got):
            torch.testing.assert_close(t, expected[name], rtol=1e-5, atol=1e-5)
