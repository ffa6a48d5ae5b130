"""MoE on TVM: CPU targets read only the routed experts' weights; CUDA keeps dlight's dense form."""

from __future__ import annotations

import numpy as np
import pytest

from irgraph.codegen.tvm.artifact import compile_graph
from irgraph.codegen.tvm.lowering import build_module
from irgraph.interpreter import run
from irgraph.runtimes.tvm import TVMSession
from tests.helpers.moe_graphs import H, moe_graph


def kernel_names(graph, target: str) -> set[str]:
    mod, _ = build_module(graph, target)
    return {gv.name_hint for gv, _ in mod.functions_items()}


def test_cpu_targets_route_and_cuda_stays_dense():
    graph = moe_graph(True, "silu", top_k=2)
    for target in ("llvm", "aarch64"):
        names = kernel_names(graph, target)
        routed = {
            n.split("_")[2] for n in names if n.startswith("moe_grouped_")
        }  # in (up and gate), down
        assert routed == {"in", "down"} and not any("expert_" in n for n in names), names
    assert {"expert_up", "expert_down"} <= kernel_names(graph, "cuda")


@pytest.mark.parametrize(
    "gated,act,router",
    [
        (
            True,
            "silu",
            {"top_k": 2},
        ),  # hidden 16, ffn 24: whole vectors in, a lane tail out, 4-row blocks
        (
            True,
            "silu",
            {"top_k": 3, "normalize": False, "scaling": 16.0, "n_group": 4, "topk_group": 2},
        ),
        (False, "gelu", {"top_k": 1, "scoring": "sigmoid"}),
        (True, "silu", {"top_k": 2, "hidden": 37, "ffn": 21}),  # lane tails both ways, 1-row blocks
        (False, "relu", {"top_k": 2, "hidden": 50, "ffn": 66}),  # 2-row blocks
    ],
)
def test_routed_experts_match_interpreter(gated, act, router, tmp_path):
    graph = moe_graph(gated, act, **router)
    session = TVMSession(compile_graph(graph, tmp_path / "moe"))
    hidden = router.get("hidden", H)
    x = np.random.default_rng(2).standard_normal((2, 7, hidden)).astype(np.float32)
    for rows in (x, x[:1, :1]):  # prefill and a one-token decode step
        np.testing.assert_allclose(
            session.run({"x": rows})["y"],
            run(graph, {"x": rows})["y"],
            rtol=1e-5,
            atol=1e-5,
            err_msg=str(rows.shape),
        )


@pytest.mark.parametrize("groups", [{}, {"n_group": 4, "topk_group": 2}])
def test_router_ties_go_to_the_lower_expert_as_in_the_reference(tmp_path, groups):
    """All-equal scores (a zero router): the reference's stable argsort picks experts 0, 1, 2."""
    from irgraph import GraphBuilder

    b = GraphBuilder("router")
    x = b.input("x", f"f32[batch, seq, {H}]")
    w, idx = b.moe_router(
        x, b.param("router", f"f32[8, {H}]"), top_k=3, scoring="sigmoid", **groups
    )
    b.output("w", w)
    b.output("idx", idx)
    graph = b.build({"router": np.zeros((8, H), np.float32)})
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, H)).astype(np.float32)}
    got, want = TVMSession(compile_graph(graph, tmp_path / "router")).run(feeds), run(graph, feeds)
    np.testing.assert_array_equal(got["idx"], want["idx"])
    assert want["idx"].reshape(-1, 3).tolist() == [[0, 1, 2]] * 6
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)
