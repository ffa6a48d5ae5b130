"""TVM artifacts' `forward_last`: generation's logits for the last position only, equal to `forward`'s."""

from __future__ import annotations

import json

import numpy as np
import pytest

import irgraph
from irgraph import lm
from irgraph.codegen.tvm.artifact import compile_graph
from irgraph.codegen.tvm.last_logits import last_position_graph
from irgraph.model_zoo import build
from irgraph.runtimes.generate import Sampling, generate
from irgraph.runtimes.interpreter import InterpreterSession

PROMPT = [[3, 1, 4, 1, 5, 9]]


def test_the_variant_slices_only_the_lm_head_input():
    graph = build("llama-2", size="tiny", seed=0)
    last = last_position_graph(graph)
    assert last is not None and last.outputs["logits"].type.shape[1:] == (1, 256)
    assert [n.op for n in last.nodes].count("slice") == [n.op for n in graph.nodes].count(
        "slice"
    ) + 1
    assert set(last.params) == set(graph.params)  # the same weight arguments, in the same order
    full = irgraph.interpret(graph, PROMPT)
    np.testing.assert_allclose(irgraph.interpret(last, PROMPT), full[:, -1:], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["llama-2", "deepseek-v2", "glm-130b"]
)  # GQA, latent attention, prefix LM
def test_step_returns_the_last_position_and_generation_is_unchanged(tmp_path, name):
    graph = build(name, size="tiny", seed=0)
    artifact = compile_graph(graph, tmp_path / name)
    assert (
        json.loads((artifact / "manifest.json").read_text())["tvm"]["function_last"]
        == "forward_last"
    )
    session = irgraph.runtimes.open(artifact)
    feeds = lm.make_feeds(
        session.inputs, np.array(PROMPT), lm.empty_cache(session.inputs, 1), past_len=0
    )
    logits, _ = session.step(feeds)
    assert logits.shape == (1, 1, 256)
    np.testing.assert_allclose(
        logits, irgraph.interpret(graph, PROMPT)[:, -1:], rtol=1e-4, atol=1e-4
    )
    reference = generate(InterpreterSession(graph), PROMPT, 8, sampling=Sampling())
    assert session.generate(PROMPT, 8) == reference


def test_graphs_whose_logits_are_not_one_head_matmul_keep_forward(tmp_path):
    graph = build("t5", size="tiny", seed=0)  # logits scaled after the head: no variant
    assert last_position_graph(graph) is None
    artifact = compile_graph(graph, tmp_path / "t5")
    assert json.loads((artifact / "manifest.json").read_text())["tvm"]["function_last"] is None
