"""ONNX lowerings of the elementwise, tensor and nn ops.

One function per IR op name (STYLE.md lesson 8).

A lowering follows the one convention of `irgraph.codegen.lowering`:
`fn(e: Emitter, node: Node, *ins: str) -> list[str]`, the ONNX names of the
node's results; `ins` holds the ONNX names of the node's inputs ('' for an
absent optional one). Attention, rotary and MoE live in their own modules and
register into the same table.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from irgraph.activations import ACTIVATIONS
from irgraph.codegen.lowering import LoweringTable
from irgraph.codegen.onnx.emitter import Emitter
from irgraph.codegen.onnx.quantized import (
    block_size,
    gather_block_quantized,
    matmul_nbits,
    use_matmul_nbits,
)
from irgraph.codegen.onnx.w8a8 import linear_i8_token
from irgraph.dtypes import DType
from irgraph.errors import CodegenError
from irgraph.ir import Node, Value
from irgraph.quant import ACT_NONE

LOWERINGS: LoweringTable[Emitter, str] = LoweringTable("onnx")
lowers = LOWERINGS.lowers


# -- activations (shared by glu, moe_experts and the unary ops) -----------------------------


def _relu2(e: Emitter, x: str) -> str:  # max(x, 0)²
    r = e.op1("Relu", x)
    return e.op1("Mul", r, r)


def _gelu_erf(e: Emitter, x: str) -> str:  # 0.5·x·(1 + erf(x/√2))
    erf = e.op1("Erf", e.op1("Mul", x, e.const(1 / math.sqrt(2))))
    return e.op1("Mul", e.op1("Mul", x, e.const(0.5)), e.op1("Add", erf, e.const(1.0)))


def _gelu_tanh(e: Emitter, x: str) -> str:  # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715x³)))
    cube = e.op1("Mul", e.op1("Mul", x, x), x)
    inner = e.op1("Add", x, e.op1("Mul", cube, e.const(0.044715)))
    t = e.op1("Tanh", e.op1("Mul", inner, e.const(math.sqrt(2 / math.pi))))
    return e.op1("Mul", e.op1("Mul", x, e.const(0.5)), e.op1("Add", t, e.const(1.0)))


# One entry per name in irgraph.activations.ACTIVATIONS (a test checks the keys match).
ACTIVATION_NODES: dict[str, Callable[[Emitter, str], str]] = {
    "relu": lambda e, x: e.op1("Relu", x),
    "relu2": _relu2,
    "gelu": _gelu_erf,
    "gelu_tanh": _gelu_tanh,
    # x·σ(1.702x)
    "fast_gelu": lambda e, x: e.op1("Mul", x, e.op1("Sigmoid", e.op1("Mul", x, e.const(1.702)))),
    # x·σ(x); ORT fuses Sigmoid+Mul into QuickGelu-like kernels
    "silu": lambda e, x: e.op1("Mul", x, e.op1("Sigmoid", x)),
    "sigmoid": lambda e, x: e.op1("Sigmoid", x),
    "softplus": lambda e, x: e.op1("Softplus", x),
}


def activation(e: Emitter, act: str, x: str) -> str:
    """The ONNX name of act(x), for an activation name of irgraph.activations."""
    try:
        emit = ACTIVATION_NODES[act]
    except KeyError:
        raise CodegenError(
            f"no onnx lowering for activation {act!r}",
            expected=", ".join(ACTIVATION_NODES),
            where="onnx",
        ) from None
    return emit(e, x)


_UNARY = {  # IR op -> ONNX op (one node)
    "neg": "Neg",
    "exp": "Exp",
    "log": "Log",
    "sqrt": "Sqrt",
    "tanh": "Tanh",
    "sin": "Sin",
    "cos": "Cos",
    "erf": "Erf",
    "sigmoid": "Sigmoid",
    "relu": "Relu",
}
_BINARY = {
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "pow": "Pow",
    "maximum": "Max",
    "minimum": "Min",
}


@lowers(*_UNARY)
def _unary(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op(_UNARY[node.op], ins, [e.result(node, 0)])


@lowers("rsqrt")
def _rsqrt(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op("Reciprocal", [e.op1("Sqrt", ins[0])], [e.result(node, 0)])


# Activation ops with no single ONNX node (relu and sigmoid have one, in _UNARY).
@lowers(*(name for name, a in ACTIVATIONS.items() if a.unary_op and name not in _UNARY))
def _act(e: Emitter, node: Node, *ins: str) -> list[str]:
    return [activation(e, node.op, ins[0])]


@lowers("gelu")
def _gelu(e: Emitter, node: Node, *ins: str) -> list[str]:
    return [activation(e, "gelu" if node.attrs["approximate"] == "none" else "gelu_tanh", ins[0])]


@lowers("scale")
def _scale(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op("Mul", [ins[0], e.const(float(node.attrs["factor"]))], [e.result(node, 0)])


@lowers(*_BINARY)
def _binary(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op(_BINARY[node.op], ins, [e.result(node, 0)])


@lowers("glu")
def _glu(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op("Mul", [activation(e, node.attrs["act"], ins[0]), ins[1]], [e.result(node, 0)])


# -- tensor ops -----------------------------------------------------------------------------


@lowers("matmul")
def _matmul(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op("MatMul", ins, [e.result(node, 0)])


@lowers("reshape")
def _reshape(
    e: Emitter, node: Node, *ins: str
) -> list[str]:  # ONNX Reshape has the IR's 0 / -1 semantics
    x, y = node.arg(0).type, node.outputs[0].type
    split_heads = x.rank == 3 and y.rank == 4 and y.shape[:2] == x.shape[:2]
    if y.rank == 3 and x.rank == 4 and y.shape[:2] == x.shape[:2] and ins[0] in e.flat:
        return [e.flat[ins[0]]]  # merging heads back: the tensor before the split is still there
    out = e.op("Reshape", [ins[0], e.ints(*node.attrs["shape"])], [e.result(node, 0)])
    if split_heads:
        e.flat[out[0]] = ins[0]
    return out


@lowers("transpose")
def _transpose(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op("Transpose", ins, [e.result(node, 0)], perm=list(node.attrs["perm"]))


@lowers("concat")
def _concat(e: Emitter, node: Node, *ins: str) -> list[str]:
    if node.outputs[0].type.dtype is DType.f8e4m3:  # ORT's Concat has no float8 kernel:
        f8 = e.onnx_type(DType.f8e4m3)  # through f32 and back, exact for every float8 value
        wide = [e.op1("Cast", x, to=e.onnx_type(DType.f32)) for x in ins]
        joined = e.op1("Concat", *wide, axis=node.attrs["axis"])
        return e.op("Cast", [joined], [e.result(node, 0)], to=f8)
    return e.op("Concat", ins, [e.result(node, 0)], axis=node.attrs["axis"])


@lowers("split")
def _split(e: Emitter, node: Node, *ins: str) -> list[str]:
    outs = e.op(
        "Split",
        [ins[0], e.ints(*node.attrs["sizes"])],
        [e.result(node, i) for i in range(len(node.outputs))],
        axis=node.attrs["axis"],
    )
    if node.attrs["axis"] in (-1, node.arg(0).type.rank - 1):
        e.memo[("packed", tuple(outs))] = ins[0]  # GQA can take q/k/v packed (fuse-qkv's split)
    return outs


@lowers("slice")
def _slice(e: Emitter, node: Node, *ins: str) -> list[str]:
    a = node.attrs
    return e.op(
        "Slice",
        [ins[0], e.ints(a["start"]), e.ints(a["end"]), e.ints(a["axis"]), e.ints(a["step"])],
        [e.result(node, 0)],
    )


@lowers("gather")
def _gather(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op("Gather", ins, [e.result(node, 0)], axis=node.attrs["axis"])


@lowers("where")
def _where(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op("Where", ins, [e.result(node, 0)])


@lowers("cast")
def _cast(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op("Cast", ins, [e.result(node, 0)], to=e.onnx_type(DType(node.attrs["dtype"])))


@lowers("softmax")
def _softmax(e: Emitter, node: Node, *ins: str) -> list[str]:
    return e.op("Softmax", ins, [e.result(node, 0)], axis=node.attrs["axis"])


@lowers("reduce_sum", "reduce_mean", "reduce_max")
def _reduce(e: Emitter, node: Node, *ins: str) -> list[str]:
    onnx_op = {"reduce_sum": "ReduceSum", "reduce_mean": "ReduceMean", "reduce_max": "ReduceMax"}[
        node.op
    ]
    return e.op(
        onnx_op,
        [ins[0], e.ints(*node.attrs["axes"])],
        [e.result(node, 0)],
        keepdims=int(node.attrs["keepdims"]),
    )


# -- nn ops ---------------------------------------------------------------------------------


@lowers("embedding")
def _embedding(e: Emitter, node: Node, *ins: str) -> list[str]:
    table = node.arg(1)
    if table.type.quant is not None and e.flavour == "ort" and block_size(table):
        return [gather_block_quantized(e, ins[0], table, e.result(node, 0))]
    out = e.op(
        "Gather", [ins[1], ins[0]], [e.result(node, 0)] if table.type.dtype.is_float else 1, axis=0
    )
    if not table.type.dtype.is_float:
        out = e.op("Cast", out, [e.result(node, 0)], to=e.onnx_type(DType.f32))
    return out


def transposed(e: Emitter, weight: Value) -> str:
    """W [out, in] stored as Wᵀ [in, out], so a linear is one MatMul (what ORT's kernels want)."""
    if weight.param is None or weight.type.quant is not None:  # quantized: dequantized, then Wᵀ
        return e.op1("Transpose", e.name(weight), perm=[1, 0])
    return e.weight(weight.param, "T", lambda w: w.T)


@lowers("linear")
def _linear(e: Emitter, node: Node, *ins: str) -> list[str]:
    weight, bias = node.arg(1), node.inputs[2]
    if node.attrs.get("act_quant", ACT_NONE) != ACT_NONE:
        return linear_i8_token(e, node, ins[0], ins[2])
    if weight.type.quant is not None and use_matmul_nbits(e, weight):
        out = e.result(node, 0) if bias is None else e.fresh("matmulnbits")
        y = matmul_nbits(e, ins[0], weight, out)
        return [y] if bias is None else e.op("Add", [y, ins[2]], [e.result(node, 0)])
    w = transposed(e, weight)
    if bias is None:
        return e.op("MatMul", [ins[0], w], [e.result(node, 0)])
    return e.op("Add", [e.op1("MatMul", ins[0], w), ins[2]], [e.result(node, 0)])


def norm_weight(e: Emitter, weight: Value, offset: float) -> str:
    """The norm's γ with its weight_offset folded in (Nemotron's layernorm1p)."""
    if not offset:
        return e.name(weight)
    if weight.param is None:
        return e.op1("Add", e.name(weight), e.const(float(offset)))
    return e.weight(weight.param, f"plus{offset:g}", lambda w: w + offset)


@lowers("add_rms_norm")
def _add_rms_norm(e: Emitter, node: Node, *ins: str) -> list[str]:
    """ort: one SkipSimplifiedLayerNormalization (its 4th output is the sum); portable: Add and
    RMSNormalization."""
    a = node.attrs
    gamma = norm_weight(e, node.arg(2), a["weight_offset"])
    total, normed = e.result(node, 0), e.result(node, 1)
    if e.flavour == "ort":
        e.op(
            "SkipSimplifiedLayerNormalization",
            [ins[0], ins[1], gamma],
            [normed, "", "", total],
            domain="com.microsoft",
            epsilon=a["eps"],
        )
        return [total, normed]
    e.op("Add", ins[:2], [total])
    e.op("RMSNormalization", [total, gamma], [normed], axis=-1, epsilon=a["eps"])
    return [total, normed]


@lowers("layer_norm")
def _layer_norm(e: Emitter, node: Node, *ins: str) -> list[str]:
    a = node.attrs
    inputs = [ins[0], norm_weight(e, node.arg(1), a["weight_offset"])] + (
        [ins[2]] if ins[2] else []
    )
    return e.op("LayerNormalization", inputs, [e.result(node, 0)], axis=-1, epsilon=a["eps"])


@lowers("rms_norm")
def _rms_norm(e: Emitter, node: Node, *ins: str) -> list[str]:
    a = node.attrs
    gamma = norm_weight(e, node.arg(1), a["weight_offset"])
    return e.op("RMSNormalization", [ins[0], gamma], [e.result(node, 0)], axis=-1, epsilon=a["eps"])
