"""Sparse MoE dispatch inside whole tiny twins (Mixtral, DeepSeek-v2).

Logits vs the interpreter, gradients vs the dense form.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import irgraph
from irgraph import model_zoo
from irgraph.codegen.torch import moe
from irgraph.codegen.torch.module import numpy_runner, to_torch, torch_feeds
from irgraph.lm import empty_cache, graph_inputs, make_feeds

TWINS = ["mixtral", "deepseek-v2"]
IDS = np.array([[5, 17, 3, 99, 42, 7, 250, 1, 64, 12, 33, 8]], dtype=np.int64)


@pytest.fixture(scope="module", params=TWINS)
def twin(request):
    graph = model_zoo.build(request.param)
    assert any(n.op == "moe_experts" for n in graph.nodes)
    return graph


def test_twin_logits_match_interpreter(twin):
    want = irgraph.interpret(twin, IDS)
    got = irgraph.lm.forward(numpy_runner(to_torch(twin)), graph_inputs(twin), IDS)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def _grads(graph) -> dict[str, np.ndarray]:
    """Every parameter's gradient of a fixed projection of the logits."""
    module = to_torch(graph)
    inputs = graph_inputs(graph)
    feeds = torch_feeds(make_feeds(inputs, IDS, empty_cache(inputs, 1), past_len=0))
    logits = module(**feeds)["logits"]
    probe = torch.linspace(-1, 1, logits.numel(), dtype=logits.dtype).reshape(logits.shape)
    (logits * probe).sum().backward()
    return {
        name: p.grad.numpy().copy() for name, p in module.named_parameters() if p.grad is not None
    }


def test_twin_gradients_match_dense(twin, monkeypatch):
    calls = {"sparse": 0, "dense": 0}

    def counted(form, fn):
        def run(*args):
            calls[form] += 1
            return fn(*args)

        return run

    monkeypatch.setattr(moe, "sparse_experts", counted("sparse", moe.sparse_experts))
    sparse = _grads(twin)
    monkeypatch.setattr(
        moe, "sparse_experts", counted("dense", moe.dense_experts)
    )  # eager path now runs dense
    dense = _grads(twin)
    assert calls["sparse"] == calls["dense"] > 0
    assert sparse.keys() == dense.keys()
    router = [n for n in sparse if "router" in n]
    assert router and all(np.abs(dense[n]).max() > 0 for n in router)
    for name in sparse:
        # float32 sums in a different order: the tolerance scales with the gradient's size (embed
        # grads reach ~60)
        scale = float(np.abs(dense[name]).max())
        np.testing.assert_allclose(
            sparse[name], dense[name], atol=2e-6 * scale + 1e-7, rtol=1e-5, err_msg=name
        )
