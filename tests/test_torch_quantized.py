"""Quantized graphs through the torch backend (issue 13): stored parts as buffers, dequantized
in forward, equal to the interpreter on the quantized graph; writing weights back refuses.
"""

from __future__ import annotations

import numpy as np
import pytest

import irgraph
from irgraph.codegen.torch import numpy_runner, to_torch, with_weights
from irgraph.codegen.torch.quantized import QuantizedWeight
from irgraph.errors import CodegenError
from irgraph.lm import forward, graph_inputs, is_encoder_decoder
from irgraph.model_zoo import build, names
from irgraph.passes import run_pipeline

IDS = np.array([[5, 17, 3, 9, 30, 2]])


def _check(name: str, pipeline: str) -> None:
    graph = run_pipeline(build(name, size="tiny", seed=0), pipeline).graph
    module = to_torch(graph)
    parts = {k for k in module.state_dict() if k.endswith((".q", ".scales", ".zero_points"))}
    assert parts and parts <= {k for k, _ in module.named_buffers()}  # not trained
    kw = (
        {"encoder_ids": np.array([[7, 1, 12, 4]])}
        if is_encoder_decoder(graph_inputs(graph))
        else {}
    )
    for decode in (False, True):
        expected = irgraph.interpret(graph, IDS, decode=decode, **kw)
        got = forward(numpy_runner(module), graph_inputs(graph), IDS, decode=decode, **kw)
        np.testing.assert_allclose(
            got, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max())
        )


@pytest.mark.parametrize(
    "name, pipeline",
    [
        ("llama-2", "quantize(bits=4, group=32)"),
        ("mixtral-8x22b", "quantize(bits=3, group=0, sym=false)"),
        ("t5", "quantize(bits=8, group=16, scale_dtype=f32)"),
    ],
)
def test_quantized_graph_equals_interpreter(name, pipeline):
    _check(name, pipeline)


@pytest.mark.slow
@pytest.mark.parametrize("name", names())
def test_every_quantized_zoo_model_equals_interpreter(name):
    _check(name, "quantize(bits=4, group=32)")


def test_weights_do_not_flow_back_into_a_quantized_graph():
    graph = run_pipeline(build("llama-2", size="tiny", seed=0), "quantize(group=32)").graph
    module = to_torch(graph)
    assert any(isinstance(m, QuantizedWeight) for m in module.modules())
    with pytest.raises(
        CodegenError, match="cannot write torch weights back into a quantized graph"
    ):
        with_weights(graph, module)
