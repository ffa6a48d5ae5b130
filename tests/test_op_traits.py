"""Op traits: declared on every op, checked at registration, and the only thing the passes ask.

A planted activation op (registered here, removed after) must be traced by the
fusions like silu is; each backend's activation and dtype maps must cover the
core tables, so a new activation or dtype fails here rather than at compile time.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest

import irgraph
from irgraph.activations import ACTIVATIONS
from irgraph.dtypes import DType
from irgraph.errors import IRError
from irgraph.passes import check_equivalent, run_pipeline
from irgraph.passes.equivalence import random_feeds
from irgraph.passes.graphs import GraphIndex
from irgraph.passes.projections import feeds_mlp, is_norm, role, transparent
from irgraph.registry import OPS, Category, Dropout, IndexBound, OpDef, get_op, ops_in, register
from irgraph.types import TensorType
from irgraph.weights import WeightStore


def test_every_op_declares_valid_traits():
    for name, op in OPS.items():
        assert isinstance(op.category, Category), name
        inputs = [i.strip("?*") for i in op.inputs]
        for trait in (op.weights, op.stored_dtype, op.routed, tuple(op.indices)):
            assert set(trait) <= set(inputs), (name, trait)
        assert {b.table for b in op.indices.values()} <= set(inputs), name
    assert ops_in(Category.NORM) == ("layer_norm", "rms_norm", "add_rms_norm")
    assert ops_in(Category.ROUTED) == ("moe_experts",)
    assert get_op("linear").weights == ("weight", "bias")
    assert get_op("embedding").indices == {"ids": IndexBound("table")}


def test_queries_the_passes_use_match_the_old_op_sets():
    """The sets the passes kept before the traits existed, now read from the registry."""

    def ops(query) -> set[str]:
        return {name for name in OPS if query(SimpleNamespace(op=name))}

    assert ops(transparent) == {"reshape", "transpose", "split", "slice", "rotary", "cast", "scale"}
    # the old MLP_OPS: the activation table's unary ops (relu, relu2, silu, fast_gelu, sigmoid
    # today: a new row joins by itself), plus gelu, glu, tanh, erf and the gate's mul
    unary_acts = {name for name, a in ACTIVATIONS.items() if a.unary_op}
    assert {"relu", "relu2", "silu", "fast_gelu", "sigmoid"} <= unary_acts
    assert ops(feeds_mlp) == {*unary_acts, "glu", "gelu", "tanh", "erf", "mul"}
    assert ops(is_norm) == {"layer_norm", "rms_norm"}
    assert {n for n, op in OPS.items() if op.stored_dtype} == {"linear", "embedding", "moe_experts"}
    assert {n: op.dropout for n, op in OPS.items() if op.dropout is not Dropout.NEVER} == {
        "embedding": Dropout.ALWAYS,
        "linear": Dropout.RESIDUAL,
        "moe_experts": Dropout.RESIDUAL,
    }


def test_index_bounds_and_active_fraction():
    f32, i64 = DType.f32, DType.i64
    gather = get_op("gather")
    data, idx = TensorType(f32, (5, 7)), TensorType(i64, (3,))
    assert gather.index_bounds([data, idx], {"axis": 1}) == {1: 7}
    assert gather.index_bounds([data, idx], {"axis": -2}) == {1: 5}
    experts = get_op("moe_experts")
    x, w = TensorType(f32, (4, 16)), TensorType(f32, (4, 2))
    up, down = TensorType(f32, (8, 32, 16)), TensorType(f32, (8, 16, 32))
    types = [x, w, TensorType(i64, (4, 2)), up, down, None]
    assert experts.active_fraction(types, act="silu") == 2 / 8
    assert experts.index_bounds(types, {"act": "silu"}) == {2: 8}


def test_registration_rejects_missing_or_wrong_traits():
    with pytest.raises(IRError, match="'no_category' declares no category"):

        @register
        class NoCategory(OpDef):
            name = "no_category"
            inputs = ("x",)

    with pytest.raises(IRError, match="'bad_weight': weights name inputs it does not have"):

        @register
        class BadWeight(OpDef):
            name = "bad_weight"
            inputs = ("x", "w?")
            category = Category.LINEAR
            weights = ("weight",)

    with pytest.raises(IRError, match="routed weights and the ROUTED category go together"):

        @register
        class Unrouted(OpDef):
            name = "unrouted"
            inputs = ("x", "w")
            category = Category.ROUTED
            weights = ("w",)

    with pytest.raises(IRError, match="an ACTIVATION is unary"):

        @register
        class Binary(OpDef):
            name = "binary_act"
            inputs = ("a", "b")
            category = Category.ACTIVATION

    assert not {"no_category", "bad_weight", "unrouted", "binary_act"} & set(OPS)


# -- a planted activation ---------------------------------------------------------------------


@pytest.fixture
def softsign() -> Iterator[str]:
    """A new activation op the passes have never heard of, registered for one test only."""

    class Softsign(OpDef):
        name = "test_softsign"
        inputs = ("x",)
        category = Category.ACTIVATION

        def infer(self, x: TensorType) -> list[TensorType]:
            return [x]

        def ref(self, x: np.ndarray) -> list[np.ndarray]:
            return [x / (1 + np.abs(x))]

    register(Softsign)
    try:
        yield Softsign.name
    finally:
        del OPS[Softsign.name]


def _gated_mlp(act: str) -> irgraph.Graph:
    g = irgraph.parse(
        f"""graph "mlp" {{
  input %x: f32[batch, seq, 4]
  param @gate.weight: f32[6, 4]
  param @up.weight: f32[6, 4]
  param @down.weight: f32[4, 6]
  %gate: f32[batch, seq, 6] = linear(%x, @gate.weight)
  %up: f32[batch, seq, 6] = linear(%x, @up.weight)
  %a: f32[batch, seq, 6] = {act}(%gate)
  %h: f32[batch, seq, 6] = mul(%a, %up)
  %y: f32[batch, seq, 4] = linear(%h, @down.weight)
  output y = %y
}}
"""
    )
    rng = np.random.default_rng(0)
    g.weights = WeightStore.from_arrays(
        {name: rng.standard_normal(v.type.shape).astype(np.float32) for name, v in g.params.items()}
    )
    return g


def test_planted_activation_is_fused_and_traced(softsign: str):
    g = _gated_mlp(softsign)
    index = GraphIndex(g)
    gate = next(n for n in g.nodes if n.outputs[0].hint == "gate")
    assert role(index, gate.outputs[0]) == "mlp"
    out = run_pipeline(g, "fuse-gate-up", check=True).graph
    assert [n.op for n in out.nodes] == ["linear", "split", softsign, "mul", "linear"]
    assert out.params["gate_up.weight"].type.shape == (12, 4)
    assert check_equivalent(g, out) <= 1e-6


def test_non_activation_unary_blocks_fusion():
    """exp is ELEMENTWISE, not an activation: mul(exp(gate), up) is no gated MLP."""
    out = run_pipeline(_gated_mlp("exp"), "fuse-gate-up").graph
    assert [n.op for n in out.nodes] == ["linear", "linear", "exp", "mul", "linear"]


def test_equivalence_draws_ids_inside_the_table():
    g = irgraph.parse(
        """graph "emb" {
  input %ids: i64[batch, seq]
  input %pick: i64[3]
  param @table: f32[5, 4]
  %e: f32[batch, seq, 4] = embedding(%ids, @table)
  %g: f32[batch, seq, 3] = gather(%e, %pick) {axis=2}
  output g = %g
}
"""
    )
    feeds = random_feeds(g, {"batch": 64, "seq": 64}, np.random.default_rng(0))
    assert feeds["ids"].min() == 0 and feeds["ids"].max() == 4
    assert feeds["pick"].max() <= 3 and feeds["pick"].min() >= 0


# -- backend maps keyed by the core tables -----------------------------------------------------

COMPUTE_DTYPES = {d for d in DType if not d.is_packed}


def test_onnx_maps_cover_the_core_tables():
    pytest.importorskip("onnx")
    from irgraph.codegen.onnx.emitter import ONNX_DTYPES
    from irgraph.codegen.onnx.lowerings import ACTIVATION_NODES, LOWERINGS

    assert set(ACTIVATION_NODES) == set(ACTIVATIONS)
    assert set(ONNX_DTYPES) == COMPUTE_DTYPES
    assert set(ops_in(Category.ELEMENTWISE, Category.ACTIVATION, Category.GATE)) <= set(LOWERINGS)


def test_tvm_maps_cover_the_core_tables():
    pytest.importorskip("tvm")
    from irgraph.codegen.tvm.lower_basic import ACTIVATION_EXPRS
    from irgraph.codegen.tvm.lowering import _DTYPES, LOWERINGS

    assert set(ACTIVATION_EXPRS) == set(ACTIVATIONS)
    assert set(_DTYPES) == COMPUTE_DTYPES
    assert set(ops_in(Category.ELEMENTWISE, Category.ACTIVATION, Category.GATE)) <= set(LOWERINGS)


def test_torch_maps_cover_the_core_tables():
    pytest.importorskip("torch")
    from irgraph.codegen.torch.lowerings import ACTIVATIONS as TORCH_ACTIVATIONS
    from irgraph.codegen.torch.lowerings import LOWERINGS, TORCH_DTYPES

    assert set(TORCH_ACTIVATIONS) == set(ACTIVATIONS)
    assert set(TORCH_DTYPES) == COMPUTE_DTYPES
    assert set(ops_in(Category.ELEMENTWISE, Category.ACTIVATION, Category.GATE)) <= set(LOWERINGS)


def test_zoo_activation_enum_names_the_core_table():
    from irgraph.model_zoo.config import Activation

    # every activation a zoo config can name has a meaning (the table may hold more)
    assert {a.value for a in Activation} <= set(ACTIVATIONS)
