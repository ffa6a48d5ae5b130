"""W8A8 linears in Relax: per-token int8 activations, an int8 x int8 -> int32 matmul, rescale.

The definition is irgraph/quant.py's, in Relax ops: sx = max|x| / 127 per row (keepdims), the
row divided by sx (by 1 where sx = 0), rounded half to even (`round` is LLVM's nearbyint),
clipped to [-128, 127] and cast to int8; `matmul(qx, Wqᵀ, out_dtype=int32)` reads the stored
int8 weight argument itself (Context.stored), and the product is rescaled by sx and the
weight's per-channel scales. TVM's default schedule of the int8 matmul is a correctness
lowering; fast int8 kernels are the kernels issue's.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax import op

from irgraph.codegen.tvm.lowering import Context, tvm_dtype
from irgraph.ir import Node
from irgraph.quant import ACT_QMAX


def _f32(value: float) -> relax.Expr:
    return relax.const(np.float32(value), "float32")


def linear_i8_token(ctx: Context, node: Node, x: relax.Expr, bias: relax.Expr | None) -> relax.Expr:
    """y = (qx · qwᵀ) · sx · sw (+ bias) for a linear with act_quant="i8_token"."""
    name = node.arg(1).param or ""
    data, scales = ctx.stored[name][:2]  # int8 [N, K], f16 | f32 [N, 1]
    n = int(node.arg(1).type.shape[0])  # type: ignore[arg-type]  # params are static
    if x.ty.dtype != "float32":
        x = ctx.emit(op.astype(x, "float32"))
    sx = ctx.emit(op.divide(op.max(op.abs(x), axis=[-1], keepdims=True), _f32(ACT_QMAX)))
    d = ctx.emit(op.where(op.greater(sx, _f32(0)), sx, _f32(1)))
    rounded = op.clip(op.round(op.divide(x, d)), -ACT_QMAX - 1, ACT_QMAX)
    qx = ctx.emit(op.astype(rounded, "int8"))
    acc = ctx.emit(op.matmul(qx, op.permute_dims(data), out_dtype="int32"))
    sw = op.reshape(op.astype(scales, "float32"), [n])
    y = ctx.emit(op.multiply(op.multiply(op.astype(acc, "float32"), sx), sw))
    if bias is not None:
        y = ctx.emit(op.add(y, op.astype(bias, "float32")))
    out = tvm_dtype(node.outputs[0].type.dtype, "linear output")
    return y if out == "float32" else ctx.emit(op.astype(y, out))
