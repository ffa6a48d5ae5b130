"""MoE in ONNX: ORT's fused MoE op where it computes the same thing, else the dense form."""

from __future__ import annotations

import numpy as np
import pytest

from irgraph.codegen.onnx import compile_graph
from irgraph.interpreter import run
from irgraph.runtimes.onnx import ORTSession
from tests.helpers.moe_graphs import H, moe_graph

CASES = [  # (gated, act, router attrs, fused in the ort flavour)
    (True, "silu", {"top_k": 2}, True),  # Mixtral
    (
        True,
        "silu",
        {
            "top_k": 3,
            "scoring": "softmax",
            "normalize": False,
            "scaling": 16.0,
            "n_group": 4,
            "topk_group": 2,
        },
        True,
    ),  # DeepSeek-v2 style: grouped, unnormalised, scaled
    (False, "relu", {"top_k": 2, "scoring": "sigmoid", "normalize": False}, True),
    (False, "silu", {"top_k": 1}, True),
    (False, "gelu_tanh", {"top_k": 2}, True),
    (True, "gelu_tanh", {"top_k": 2}, False),  # ORT's fused SwiGLU is SiLU only
    (False, "gelu", {"top_k": 2}, False),  # ORT's gelu is the tanh form
    (False, "fast_gelu", {"top_k": 2}, False),
]


@pytest.mark.parametrize("gated,act,router,fused", CASES)
def test_moe_matches_interpreter(gated, act, router, fused, tmp_path):
    graph = moe_graph(gated, act, **router)
    x = np.random.default_rng(1).standard_normal((2, 7, H)).astype(np.float32)
    want = run(graph, {"x": x})["y"]
    for flavour in ("ort", "portable"):
        session = ORTSession(compile_graph(graph, tmp_path / flavour, flavour=flavour))
        ops = session.manifest["onnx"]["ops"]
        assert ("com.microsoft:MoE" in ops) == (fused and flavour == "ort"), ops
        for rows in (x, x[:1, :1]):  # prefill and a one-token decode step
            got = session.run({"x": rows})["y"]
            np.testing.assert_allclose(
                got,
                run(graph, {"x": rows})["y"],
                rtol=1e-5,
                atol=1e-5,
                err_msg=f"{flavour} {rows.shape}",
            )
        assert np.abs(want).max() > 0.1


def test_f16_keeps_the_dense_form(tmp_path):
    """ORT's CPU MoE kernel is fp32 only (docs/onnxruntime.md §1.3)."""
    session = ORTSession(
        compile_graph(moe_graph(True, "silu", top_k=2), tmp_path / "f16", dtype="f16")
    )
    assert "com.microsoft:MoE" not in session.manifest["onnx"]["ops"]
