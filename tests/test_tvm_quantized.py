"""Quantized zoo models through tvm-llvm match the interpreter on the quantized graph (issue 13).

The stored parts of each quantized weight are `forward` arguments, dequantized in Relax
(codegen/tvm/quantized.py). Default tier: LLaMA-2 (3-bit per-channel asymmetric with f32 scales)
and Mixtral (4-bit g32, 3-D expert stacks); slow tier: every zoo model at 4-bit g32.
"""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import lm
from irgraph.codegen.tvm.artifact import compile_graph
from irgraph.passes import run_pipeline
from irgraph.runtimes.tvm import TVMSession

G32 = "quantize(bits=4, group=32)"


def _check(name: str, pipeline: str, tmp_path) -> None:
    graph = run_pipeline(zoo.build(name, size="tiny", seed=0), pipeline).graph
    session = TVMSession(compile_graph(graph, tmp_path / name, target="tvm-llvm"))
    stored = {a["name"] for a in session.manifest["tvm"]["weight_args"]}
    assert any(n.endswith(".scales") for n in stored)  # quantized parts, not float weights
    rng = np.random.default_rng(0)
    high = min(int(graph.meta.get("vocab_size", 32)), 50)
    ids = rng.integers(1, high, (2, 5))
    kw = {}
    if lm.is_encoder_decoder(session.inputs):
        kw["encoder_ids"] = rng.integers(1, high, (2, 4))
    for decode in (False, True):
        np.testing.assert_allclose(
            session.forward(ids, decode=decode, **kw),
            lm.interpret(graph, ids, decode=decode, **kw),
            rtol=1e-4,
            atol=1e-4,
            err_msg=f"{name} {pipeline} decode={decode}",
        )


FAST = [
    ("llama-2", "quantize(bits=3, group=0, sym=false, scale_dtype=f32)"),
    ("mixtral-8x22b", G32),
]


@pytest.mark.parametrize("name, pipeline", FAST)
def test_quantized_zoo_model_matches_interpreter(name, pipeline, tmp_path):
    _check(name, pipeline, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(zoo.names()) - {"mixtral-8x22b"}))
def test_every_quantized_zoo_model_matches_interpreter(name, tmp_path):
    _check(name, G32, tmp_path)
