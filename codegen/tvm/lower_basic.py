"""Lowerings of the elementwise, tensor and nn ops to Relax (one row or function per op).

Output shapes come from the IR's own inferred types (`node.outputs[i].type`),
so reshape's ONNX 0/-1 rules and slice bounds on symbolic dims are resolved
once, by the verifier, not re-derived here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from tvm import relax, te, tirx

from irgraph.activations import ACTIVATIONS
from irgraph.codegen.lowering import static_dim
from irgraph.codegen.tvm.fast_math import fast_erf, fast_exp, fast_tanh
from irgraph.codegen.tvm.linear import lower_linear
from irgraph.codegen.tvm.lowering import Context, lowers, tvm_dtype
from irgraph.codegen.tvm.norm_kernels import rms_norm_kernel
from irgraph.codegen.tvm.quantized import gathered
from irgraph.codegen.tvm.w8a8 import linear_i8_token
from irgraph.errors import CodegenError
from irgraph.ir import Node
from irgraph.quant import ACT_NONE

op = relax.op


def act(ctx: Context, name: str, x: relax.Expr) -> relax.Expr:
    """Activation by its irgraph.activations name (glu and moe_experts use these names)."""
    try:
        emit = ACTIVATION_EXPRS[name]
    except KeyError:
        raise CodegenError(
            f"no TVM lowering for activation {name!r}", expected=", ".join(ACTIVATION_EXPRS)
        ) from None
    return emit(ctx, x)


def _fast(ctx: Context, x: relax.Expr) -> bool:
    """Use the vectorisable exp/erf/tanh: CPU targets in fp32 (CUDA has fast intrinsics)."""
    return ctx.target != "cuda" and x.ty.dtype == "float32"


def _gelu_expr(ctx: Context, x: relax.Expr, tanh: bool) -> relax.Expr:
    if _fast(ctx, x):
        hint = "gelu_tanh" if tanh else "gelu"
        return ctx.bb.emit_te(_fast_gelu, x, tanh, primfunc_name_hint=hint)
    return op.nn.gelu_tanh(x) if tanh else op.nn.gelu(x)


def _silu(ctx: Context, x: relax.Expr) -> relax.Expr:
    if _fast(ctx, x):
        return ctx.bb.emit_te(_fast_silu, x, primfunc_name_hint="silu")
    return op.nn.silu(x)


# One entry per name in irgraph.activations.ACTIVATIONS (a test checks the keys match).
ACTIVATION_EXPRS: dict[str, Callable[[Context, relax.Expr], relax.Expr]] = {
    "relu": lambda ctx, x: op.nn.relu(x),
    "relu2": lambda ctx, x: op.square(op.nn.relu(x)),
    "gelu": lambda ctx, x: _gelu_expr(ctx, x, tanh=False),
    "gelu_tanh": lambda ctx, x: _gelu_expr(ctx, x, tanh=True),
    "fast_gelu": lambda ctx, x: op.multiply(
        x, op.sigmoid(op.multiply(x, relax.const(1.702, x.ty.dtype)))
    ),
    "silu": _silu,
    "sigmoid": lambda ctx, x: op.sigmoid(x),
    "softplus": lambda ctx, x: op.nn.softplus(x),
}


def _fast_silu(x: te.Tensor) -> te.Tensor:
    """x · sigmoid(x) with the vectorisable exp.

    TVM's exp is one scalar libm call per element on CPUs.
    """
    one = tirx.const(1.0, "float32")
    return te.compute(x.shape, lambda *i: x[i] / (one + fast_exp(-x[i])), name="silu")


def _fast_gelu(x: te.Tensor, approximate: bool) -> te.Tensor:
    """GELU, 0.5·x·(1 + erf(x/√2)) or its tanh form, with the vectorisable erf / tanh."""

    def c(v: float) -> tirx.PrimExpr:
        return tirx.const(v, "float32")

    def gelu(v: tirx.PrimExpr) -> tirx.PrimExpr:
        if approximate:
            inner = fast_tanh(c(math.sqrt(2 / math.pi)) * (v + c(0.044715) * v * v * v))
        else:
            inner = fast_erf(v * c(1 / math.sqrt(2)))
        return c(0.5) * v * (c(1.0) + inner)

    return te.compute(x.shape, lambda *i: gelu(x[i]), name="gelu")


_UNARY = {
    "neg": op.negative,
    "exp": op.exp,
    "log": op.log,
    "sqrt": op.sqrt,
    "rsqrt": op.rsqrt,
    "tanh": op.tanh,
    "sin": op.sin,
    "cos": op.cos,
    "erf": op.erf,
}
_ACTS = tuple(name for name, a in ACTIVATIONS.items() if a.unary_op)  # ops of the same name
_BINARY = {
    "add": op.add,
    "sub": op.subtract,
    "mul": op.multiply,
    "div": op.divide,
    "pow": op.power,
    "maximum": op.maximum,
    "minimum": op.minimum,
}


@lowers(*_UNARY)
def _unary(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(_UNARY[node.op](x))]


@lowers(*_ACTS)
def _activation(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(act(ctx, node.op, x))]


@lowers("gelu")
def _gelu_node(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(act(ctx, "gelu" if node.attrs["approximate"] == "none" else "gelu_tanh", x))]


@lowers("scale")
def _scale(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(op.multiply(x, relax.const(node.attrs["factor"], x.ty.dtype)))]


@lowers(*_BINARY)
def _binary(ctx: Context, node: Node, a: relax.Expr, b: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(_BINARY[node.op](a, b))]


@lowers("glu")
def _glu(ctx: Context, node: Node, gate: relax.Expr, up: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(op.multiply(act(ctx, node.attrs["act"], gate), up))]


@lowers("matmul")
def _matmul(ctx: Context, node: Node, a: relax.Expr, b: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(op.matmul(a, b))]


@lowers("reshape")
def _reshape(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(op.reshape(x, ctx.shape(node.outputs[0].type)))]


@lowers("transpose")
def _transpose(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(op.permute_dims(x, list(node.attrs["perm"])))]


@lowers("concat")
def _concat(ctx: Context, node: Node, *xs: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(op.concat([x for x in xs if x is not None], axis=node.attrs["axis"]))]


@lowers("split")
def _split(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    sizes = node.attrs["sizes"]
    if len(sizes) == 1:
        return [x]
    points, acc = [], 0
    for s in sizes[:-1]:
        acc += s
        points.append(acc)
    parts = ctx.emit(op.split(x, points, axis=node.attrs["axis"]))
    return [ctx.emit(relax.TupleGetItem(parts, i)) for i in range(len(sizes))]


@lowers("slice")
def _slice(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    """x[start:end:step] on one axis; begin/end resolved against the (maybe symbolic) dim."""
    t = node.arg(0).type
    axis = node.attrs["axis"] % t.rank
    start, end, step = node.attrs["start"], node.attrs["end"], node.attrs["step"]
    dim = t.shape[axis]
    if isinstance(dim, int):
        begin, stop, _ = slice(start, end, step).indices(dim)
        b, e = ctx.dim(begin), ctx.dim(stop)
    else:  # the verifier allows [0:] and [-k:] on symbolic dims
        full = ctx.dim(dim)
        b = full + start if start < 0 else ctx.dim(start)
        e = full
    return [ctx.emit(op.strided_slice(x, [axis], [b], [e], [step], assume_inbound=True))]


@lowers("gather")
def _gather(ctx: Context, node: Node, data: relax.Expr, indices: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(op.take(data, indices, axis=node.attrs["axis"], mode="wrap"))]


@lowers("where")
def _where(
    ctx: Context, node: Node, cond: relax.Expr, a: relax.Expr, b: relax.Expr
) -> list[relax.Expr]:
    return [ctx.emit(op.where(cond, a, b))]


@lowers("cast")
def _cast(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(op.astype(x, tvm_dtype(node.outputs[0].type.dtype)))]


@lowers("softmax")
def _softmax(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    return [ctx.emit(op.nn.softmax(x, axis=node.attrs["axis"]))]


_REDUCE = {"reduce_sum": op.sum, "reduce_mean": op.mean, "reduce_max": op.max}


@lowers(*_REDUCE)
def _reduce(ctx: Context, node: Node, x: relax.Expr) -> list[relax.Expr]:
    return [
        ctx.emit(
            _REDUCE[node.op](x, axis=list(node.attrs["axes"]), keepdims=node.attrs["keepdims"])
        )
    ]


@lowers("embedding")
def _embedding(
    ctx: Context, node: Node, ids: relax.Expr, table: relax.Expr | None
) -> list[relax.Expr]:
    param = node.arg(1).param
    if table is None and param in ctx.quant_tables:  # a quantized table: only its rows dequantized
        t = node.arg(1).type
        assert t.quant is not None
        shape = (int(t.shape[0]), int(t.shape[1]))  # type: ignore[arg-type]  # params are static
        y = gathered(ctx.bb, t.quant, shape, ctx.quant_tables[param], ids)
    else:
        y = ctx.emit(
            op.take(table, ids, axis=0, mode="wrap")
        )  # np.take for -n..n-1; never out of bounds
    want = tvm_dtype(node.outputs[0].type.dtype)
    return [y if y.ty.dtype == want else ctx.emit(op.astype(y, want))]


def _norm_weight(w: relax.Expr, offset: float) -> relax.Expr:
    return w if offset == 0 else op.add(w, relax.const(offset, w.ty.dtype))


@lowers("layer_norm")
def _layer_norm(
    ctx: Context, node: Node, x: relax.Expr, weight: relax.Expr, bias: relax.Expr | None
) -> list[relax.Expr]:
    w = ctx.emit(_norm_weight(weight, node.attrs["weight_offset"]))
    if bias is None:
        bias = relax.const(0.0, x.ty.dtype)
        bias = ctx.emit(op.broadcast_to(bias, [ctx.dim(node.arg(0).type.shape[-1])]))
    return [ctx.emit(op.nn.layer_norm(x, w, bias, axes=[-1], epsilon=node.attrs["eps"]))]


@lowers("rms_norm")
def _rms_norm(ctx: Context, node: Node, x: relax.Expr, weight: relax.Expr) -> list[relax.Expr]:
    w = ctx.emit(_norm_weight(weight, node.attrs["weight_offset"]))
    if ctx.target != "cuda" and x.ty.dtype == "float32" and w.ty.dtype == "float32":
        dim, eps = static_dim(node.arg(0).type.shape[-1], node, "normalized dim"), node.attrs["eps"]
        kernel = ctx.kernel(f"rms_norm_{dim}_{eps!r}", lambda: rms_norm_kernel(dim, eps))
        shape = ctx.shape(node.arg(0).type)
        rows = ctx.emit(relax.op.reshape(x, [-1, dim]))  # (tokens, D)
        y = ctx.emit(relax.call_tir(kernel, [rows, w], out_ty=rows.ty))
        return [ctx.emit(op.reshape(y, shape))]
    return [ctx.emit(op.nn.rms_norm(x, w, axes=[-1], epsilon=node.attrs["eps"]))]


@lowers("add_rms_norm")
def _add_rms_norm(
    ctx: Context, node: Node, x: relax.Expr, residual: relax.Expr, weight: relax.Expr
) -> list[relax.Expr]:
    total = ctx.emit(op.add(x, residual))  # rms_norm reads node.inputs[0]'s type: the sum's
    return [total, *_rms_norm(ctx, node, total, weight)]


@lowers("linear")
def _linear(
    ctx: Context, node: Node, x: relax.Expr, weight: relax.Expr, bias: relax.Expr | None
) -> list[relax.Expr]:
    if node.attrs.get("act_quant", ACT_NONE) != ACT_NONE:
        return [linear_i8_token(ctx, node, x, bias)]
    return [lower_linear(ctx, node, x, weight, bias)]
