"""W8A8 linears in ONNX: per-token int8 activations by explicit ops around `MatMulInteger`.

ORT's own dynamic int8 ops do not fit the IR's numerics: `DynamicQuantizeMatMul` quantizes A
per tensor (uint8, asymmetric), and `MatMulIntegerToFloat`'s a_scale is per tensor or per column
of A (per input channel), never per row. So a linear with act_quant="i8_token" lowers to the
definition in irgraph/quant.py, op by op (standard ONNX, both flavours):

    sx  = ReduceMax(Abs(x), axis -1, keepdims) / 127          [..., 1]  float32
    d   = Where(sx > 0, sx, 1)                                  an all-zero row divides by 1
    qx  = Cast(Clip(Round(x / d), -128, 127), int8)             Round is half to even
    acc = MatMulInteger(qx, Wqᵀ)                                int32 [..., N], Wqᵀ int8 [K, N]
    y   = Cast(acc, float32) · sx · sw  (+ bias)                sw float32 [N]

The cost of the ops around MatMulInteger is measured by benchmarks/w8a8_matmul.py (README).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from irgraph.codegen.onnx.emitter import Emitter
from irgraph.dtypes import DType
from irgraph.ir import Node
from irgraph.quant import ACT_QMAX, SCALES

FLOAT, INT8 = TensorProto.FLOAT, TensorProto.INT8


def linear_i8_token(e: Emitter, node: Node, x: str, bias: str) -> list[str]:
    """The ONNX nodes of `node` (a linear with act_quant="i8_token") reading x and bias."""
    name = node.arg(1).param or ""
    compute = e.onnx_type(DType.f32)  # the graph's float dtype; the scales are float32
    if compute != FLOAT:
        x = e.op1("Cast", x, to=FLOAT)
    wq = e.derived(f"{name}.i8T", lambda: np.ascontiguousarray(e.graph.stored(name)[""].T))
    sw = e.const(np.asarray(e.graph.stored(name)[SCALES], np.float32).reshape(-1), np.float32)

    def f32(v: float) -> str:
        return e.const(np.float32(v), np.float32)

    sx = e.op1("Div", e.op1("ReduceMax", e.op1("Abs", x), e.ints(-1), keepdims=1), f32(ACT_QMAX))
    d = e.op1("Where", e.op1("Greater", sx, f32(0)), sx, f32(1))
    rounded = e.op1("Clip", e.op1("Round", e.op1("Div", x, d)), f32(-ACT_QMAX - 1), f32(ACT_QMAX))
    acc = e.op1("MatMulInteger", e.op1("Cast", rounded, to=INT8), wq)  # int32 [..., N]
    y = e.op1("Mul", e.op1("Cast", acc, to=FLOAT), sx)
    out = e.result(node, 0)
    last = [out] if compute == FLOAT else 1
    y = e.op("Mul", [y, sw], 1 if bias else last)[0]
    if bias:
        b = bias if compute == FLOAT else e.op1("Cast", bias, to=FLOAT)
        y = e.op("Add", [y, b], last)[0]
    if compute != FLOAT:
        y = e.op("Cast", [y], [out], to=compute)[0]
    return [y]
