"""Transformer-XL relative attention (issue 18 item 5): `position=transformer_xl` against a
float64 reference written from Dai et al.'s released code (tests/helpers/xl_reference.py), for
prefill and for decoding through its segment memory; the Gopher twin through ONNX, TVM and
torch; and the counts the real structure gives Gopher and Chinchilla."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import lm
from irgraph.analysis import cost
from irgraph.codegen.onnx import compile_graph as compile_onnx
from irgraph.codegen.torch import numpy_runner, to_torch
from irgraph.codegen.tvm.artifact import compile_graph as compile_tvm
from irgraph.model_zoo.config import Activation, ModelConfig, Position
from irgraph.runtimes.onnx import ORTSession
from irgraph.runtimes.tvm import TVMSession
from tests.helpers.xl_reference import XlReference

IDS = np.array([[5, 17, 99, 200, 3, 42, 7, 8, 250, 1], [9, 1, 14, 77, 3, 5, 2, 180, 6, 40]])
XL = ModelConfig(
    name="xl",
    vocab_size=256,
    hidden=64,
    layers=2,
    heads=4,
    ffn=128,
    position=Position.TRANSFORMER_XL,
    max_position=64,
    activation=Activation.RELU,
)


def test_matches_the_reference_prefill_and_memory_decode():
    graph = zoo.build_graph(XL)
    ref = XlReference(graph.weights, XL.layers, XL.heads, XL.norm_eps)
    full, _ = ref.forward(IDS)
    np.testing.assert_allclose(lm.interpret(graph, IDS), full, atol=1e-5, rtol=0)
    # decode: 4 tokens of prefill, then one token at a time through Transformer-XL's memory
    first, mems = ref.forward(IDS[:, :4])
    steps = [first]
    for t in range(4, IDS.shape[1]):
        logits, mems = ref.forward(IDS[:, t : t + 1], mems)
        steps.append(logits)
    np.testing.assert_allclose(
        lm.interpret(graph, IDS, decode=True), np.concatenate(steps, axis=1), atol=1e-5, rtol=0
    )
    # the position terms matter: without v and W_r the logits move
    for name in ("layers.0.attn.r_r_bias", "layers.0.attn.r.weight"):
        weights = dict(graph.weights) | {name: np.zeros_like(graph.weights[name])}
        other, _ = XlReference(weights, XL.layers, XL.heads, XL.norm_eps).forward(IDS)
        assert np.abs(other - full).max() > 1e-3, name


def test_gopher_twin_through_the_backends(tmp_path):
    graph = zoo.build("gopher")
    assert sum(n.op == "xl_relative_bias" for n in graph.nodes) == 2
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
    module = numpy_runner(to_torch(graph))
    inputs = lm.graph_inputs(graph)
    for decode, expected in ref.items():
        got = lm.forward(module, inputs, IDS, decode=decode)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=f"torch {decode}")


@pytest.mark.parametrize(("name", "published"), [("gopher", 280e9), ("chinchilla", 70e9)])
def test_counts_from_the_real_structure(name, published):
    graph = zoo.build(name, size="published", weights=False)
    params = cost(graph).params
    config = zoo.config(name)
    w_r = config.layers * config.hidden * config.heads * config.dim_per_head
    assert abs(params / published - 1) < 0.05  # was ~7% short without W_r
    assert abs((params - w_r) / published - 1) > 0.05
