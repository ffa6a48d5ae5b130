"""MoE router and experts lowered to standard ONNX.

The router uses TopK, whose ties keep the lower index first, as the
reference's stable argsort does.

Experts, `ort` flavour in f32: ORT's fused `com.microsoft.MoE`, which runs each
token through its top-k experts only. Its CPU kernel has no separate up
projection (docs/onnxruntime.md §1.3), so gated SiLU experts go in as one fc1 with gate and
up rows interleaved (`swiglu_fusion=1`); ungated relu / silu / tanh-GELU use
fc1 alone. The op routes by softmax(router_probs) itself, so the IR router's
weights w (any scoring, grouping or scaling) are handed over as log(w) at the
chosen experts and -1e9 elsewhere: the op then weights expert k by w_k / Σw,
and the output is multiplied back by Σw (exact to float rounding).

Otherwise (portable flavour, other activations, f16/bf16, computed weights) the
experts run densely: every expert sees every token as one batched MatMul over
the stacked weights, and a dense [tokens, experts] routing matrix (zeros where
an expert was not chosen) combines them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from irgraph.codegen.lowering import static_dim
from irgraph.codegen.onnx.emitter import Emitter
from irgraph.codegen.onnx.lowerings import activation, lowers
from irgraph.dtypes import DType
from irgraph.errors import CodegenError
from irgraph.ir import Node, Value


@lowers("moe_router")
def _router(e: Emitter, node: Node, *ins: str) -> list[str]:
    a = node.attrs
    experts = static_dim(node.arg(1).type.shape[0], node, "experts")
    logits = e.op1(
        "MatMul",
        ins[0],
        e.op1("Transpose", ins[1], perm=[1, 0])
        if (router := node.arg(1).param) is None
        else e.weight(router, "T", lambda w: w.T),
    )
    scores = (
        e.op1("Softmax", logits, axis=-1) if a["scoring"] == "softmax" else e.op1("Sigmoid", logits)
    )
    choose = scores
    if a["n_group"] > 1:  # keep the best topk_group groups (by their best expert), mask the rest
        grouped = e.op1(
            "Reshape",
            scores,
            e.op1(
                "Concat",
                e.op1("Shape", scores, end=-1),
                e.ints(a["n_group"], experts // a["n_group"]),
                axis=0,
            ),
        )
        group_score = e.op1("ReduceMax", grouped, e.ints(-1), keepdims=0)  # (..., G)
        _, keep = e.op("TopK", [group_score, e.ints(a["topk_group"])], 2, axis=-1)
        zeros = e.op1("Expand", e.const(0.0), e.op1("Shape", group_score))
        ones = e.op1("Expand", e.const(1.0), e.op1("Shape", keep))
        group_mask = e.op1("ScatterElements", zeros, keep, ones, axis=-1)  # (..., G) 1 = kept
        expert_mask = e.op1(
            "Reshape",
            e.op1("Expand", e.op1("Unsqueeze", group_mask, e.ints(-1)), e.op1("Shape", grouped)),
            e.op1("Shape", scores),
        )
        choose = e.op1(
            "Where", e.op1("Cast", expert_mask, to=9), scores, e.const(-np.inf, e.np_float)
        )
    _, indices = e.op("TopK", [choose, e.ints(a["top_k"])], 2, axis=-1)
    weights = e.op1("GatherElements", scores, indices, axis=-1)
    if a["normalize"]:
        weights = e.op1("Div", weights, e.op1("ReduceSum", weights, e.ints(-1), keepdims=1))
    if a["scaling"] != 1.0:
        weights = e.op1("Mul", weights, e.const(float(a["scaling"])))
    return [
        e.op("Identity", [weights], [e.result(node, 0)])[0],
        e.op("Identity", [indices], [e.result(node, 1)])[0],
    ]


@lowers("moe_fixed_router")
def _fixed_router(e: Emitter, node: Node, ids: str, domain: str, table: str) -> list[str]:
    """experts = table.flat[domain·vocab + ids] (one Gather), weight 1."""
    vocab = static_dim(node.arg(2).type.shape[1], node, "vocab")
    flat = e.op1("Reshape", table, e.ints(-1))
    at = e.op1("Add", e.op1("Mul", e.op1("Unsqueeze", domain, e.ints(1)), e.ints(vocab)), ids)
    indices = e.op1("Unsqueeze", e.op1("Gather", flat, at, axis=0), e.ints(-1))
    ones = e.op1("Expand", e.const(np.float32(1.0), np.float32), e.op1("Shape", indices))
    return [
        e.op("Identity", [ones], [e.result(node, 0)])[0],
        e.op("Identity", [indices], [e.result(node, 1)])[0],
    ]


def _stacked_t(e: Emitter, v: Value) -> str:
    """[E, out, in] -> [E, in, out] so that x [1, T, in] @ W gives [E, T, out]."""
    if v.param is None:
        return e.op1("Transpose", e.name(v), perm=[0, 2, 1])
    return e.weight(v.param, "T", lambda w: np.ascontiguousarray(w.transpose(0, 2, 1)))


# IR activation -> ORT MoE activation_type with the same meaning (checked against the reference).
_ORT_ACTIVATIONS = {"relu": "relu", "silu": "silu", "gelu_tanh": "gelu"}
_NOT_CHOSEN = -1e9  # router_probs of the experts the IR router did not choose: softmax weight 0


def _param(node: Node, v: Value) -> str:
    """The weight name of `v`, which `_fused_moe_fits` checked is a graph parameter."""
    if v.param is None:
        raise CodegenError(f"{node.op}: the fused MoE needs weight parameters", got=repr(v))
    return v.param


def _fused_moe_fits(e: Emitter, node: Node) -> bool:
    _, _, _, w_up, w_down, w_gate = node.inputs
    act = node.attrs["act"]
    weights_are_params = all(v.param for v in (w_up, w_down, w_gate) if v is not None)
    kind_fits = act == "silu" if w_gate is not None else act in _ORT_ACTIVATIONS
    return e.flavour == "ort" and e.dtype == DType.f32 and weights_are_params and kind_fits


def _fused_experts(e: Emitter, node: Node, ins: Sequence[str]) -> list[str]:
    """ORT's MoE op over the IR router's choice (see the module docstring)."""
    w_up, w_down, w_gate = node.arg(3), node.arg(4), node.inputs[5]
    experts = static_dim(w_up.type.shape[0], node, "experts")
    hidden = static_dim(w_up.type.shape[2], node, "hidden")
    k = static_dim(node.arg(1).type.shape[-1], node, "top_k")
    up_name, down_name = _param(node, w_up), _param(node, w_down)
    tokens = e.op1("Reshape", ins[0], e.ints(-1, hidden))  # (T, H)
    weights = e.op1("Reshape", ins[1], e.ints(-1, k))  # (T, k)
    indices = e.op1("Reshape", ins[2], e.ints(-1, k))
    floor = e.op1(
        "Expand", e.const(_NOT_CHOSEN), e.op1("Concat", e.dim(weights, 0), e.ints(experts), axis=0)
    )
    probs = e.op1("ScatterElements", floor, indices, e.op1("Log", weights), axis=1)  # (T, E)
    if w_gate is not None:
        gate_name = _param(node, w_gate)

        def interleave() -> np.ndarray:
            gate, up = (
                np.asarray(e.graph.weight(name), dtype=np.float32) for name in (gate_name, up_name)
            )
            fc1 = np.empty((gate.shape[0], 2 * gate.shape[1], gate.shape[2]), np.float32)
            fc1[:, 0::2], fc1[:, 1::2] = gate, up  # rows g0, u0, g1, u1, ...: swiglu_fusion=1
            return fc1

        fc1 = e.derived(f"{up_name}.gate_up_interleaved", interleave)
        attrs = {
            "activation_type": "swiglu",
            "swiglu_fusion": 1,
            "activation_alpha": 1.0,
            "activation_beta": 0.0,
            "swiglu_limit": float("inf"),
        }
    else:
        fc1 = e.weight(up_name)
        attrs = {"activation_type": _ORT_ACTIVATIONS[node.attrs["act"]]}
    y = e.op1(
        "MoE",
        tokens,
        probs,
        fc1,
        "",
        e.weight(down_name),
        domain="com.microsoft",
        k=k,
        normalize_routing_weights=0,
        **attrs,
    )  # Σ_k w_k/Σw · expert_k(x)
    y = e.op1("Mul", y, e.op1("ReduceSum", weights, e.ints(-1), keepdims=1))
    return e.op("Reshape", [y, e.op1("Shape", ins[0])], [e.result(node, 0)])


@lowers("moe_experts")
def _experts(e: Emitter, node: Node, *ins: str) -> list[str]:
    if _fused_moe_fits(e, node):
        return _fused_experts(e, node, ins)
    w_up, w_down, w_gate = node.arg(3), node.arg(4), node.inputs[5]
    experts = static_dim(w_up.type.shape[0], node, "experts")
    hidden = static_dim(w_up.type.shape[2], node, "hidden")
    tokens = e.op1(
        "Unsqueeze", e.op1("Reshape", ins[0], e.ints(-1, hidden)), e.ints(0)
    )  # (1, T, H)
    up = e.op1("MatMul", tokens, _stacked_t(e, w_up))  # (E, T, F)
    if w_gate is not None:
        h = e.op1(
            "Mul",
            activation(e, node.attrs["act"], e.op1("MatMul", tokens, _stacked_t(e, w_gate))),
            up,
        )
    else:
        h = activation(e, node.attrs["act"], up)
    y = e.op1("MatMul", h, _stacked_t(e, w_down))  # (E, T, H)
    k = static_dim(node.arg(1).type.shape[-1], node, "top_k")
    weights = e.op1("Reshape", ins[1], e.ints(-1, k))
    indices = e.op1("Reshape", ins[2], e.ints(-1, k))
    zeros = e.op1(
        "Expand", e.const(0.0), e.op1("Concat", e.dim(weights, 0), e.ints(experts), axis=0)
    )
    routing = e.op1("ScatterElements", zeros, indices, weights, axis=1)  # (T, E)
    combined = e.op1(
        "ReduceSum",
        e.op1("Mul", y, e.op1("Unsqueeze", e.op1("Transpose", routing, perm=[1, 0]), e.ints(-1))),
        e.ints(0),
        keepdims=0,
    )  # (T, H)
    return e.op("Reshape", [combined, e.op1("Shape", ins[0])], [e.result(node, 0)])
