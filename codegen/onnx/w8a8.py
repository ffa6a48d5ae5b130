"""W8A8 linears in ONNX: per-token int8 activations by explicit ops around `MatMulInteger`.

ORT's own dynamic int8 ops do not fit the IR's numerics: `DynamicQuantizeMatMul` quantizes A
per tensor (uint8, asymmetric), and `MatMulIntegerToFloat`'s a_scale is per tensor or per column
of A (per input channel), never per row. So a linear with act_quant="i8_token" lowers to the
definition in irgraph/quant.py, op by op (standard ONNX, both flavours):

    sx  = ReduceMax(Abs(x), axis -1, keepdims) / 127          [..., 1]  float32
    d   = Where(sx > 0, sx, 1)                                  an all-zero row divides by 1
    qx  = Clip(Round(x / d), -128, 127)                         Round is half to even
    acc = MatMulInteger(u8(qx + 128), u8(Wqᵀ + 128), 128, 128)  int32 [..., N] = qx · Wqᵀ
    y   = Cast(acc, float32) · sx · sw  (+ bias)                sw float32 [N]

Both operands are biased to uint8 with zero point 128 (the same integers): ORT 1.32 runs
int8 x int8 MatMulInteger on a slow path, and uint8 x int8 saturates int16 pair sums on AVX2
CPUs without VNNI. What the ops cost next to a float MatMul: benchmarks/w8a8_matmul.py (README).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from irgraph.codegen.onnx.emitter import Emitter
from irgraph.dtypes import DType
from irgraph.ir import Node
from irgraph.quant import ACT_QMAX, SCALES

FLOAT, UINT8 = TensorProto.FLOAT, TensorProto.UINT8


def linear_i8_token(e: Emitter, node: Node, x: str, bias: str) -> list[str]:
    """The ONNX nodes of `node` (a linear with act_quant="i8_token") reading x and bias."""
    name = node.arg(1).param or ""
    compute = e.onnx_type(DType.f32)  # the graph's float dtype; the scales are float32
    if compute != FLOAT:
        x = e.op1("Cast", x, to=FLOAT)
    wq = e.derived(f"{name}.u8T", lambda: _biased(np.asarray(e.graph.stored(name)[""]).T))
    sw = e.const(np.asarray(e.graph.stored(name)[SCALES], np.float32).reshape(-1), np.float32)

    def f32(v: float) -> str:
        return e.const(np.float32(v), np.float32)

    sx = e.op1("Div", e.op1("ReduceMax", e.op1("Abs", x), e.ints(-1), keepdims=1), f32(ACT_QMAX))
    d = e.op1("Where", e.op1("Greater", sx, f32(0)), sx, f32(1))
    rounded = e.op1("Clip", e.op1("Round", e.op1("Div", x, d)), f32(-ACT_QMAX - 1), f32(ACT_QMAX))
    # qx + 128 as uint8 with zero point 128 (the weight too): the same integers, on MLAS' u8 x u8
    # kernel. int8 x int8 ran ~100x slower on this CPU; u8 x s8 saturates int16 pair sums on
    # AVX2 without VNNI (wrong results): benchmarks/w8a8_matmul.py
    biased = e.op1("Cast", e.op1("Add", rounded, f32(ACT_QMAX + 1)), to=UINT8)
    zero_point = e.const(np.uint8(ACT_QMAX + 1), np.uint8)
    acc = e.op1("MatMulInteger", biased, wq, zero_point, zero_point)  # int32 [..., N]
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


def _biased(q: np.ndarray) -> np.ndarray:
    """int8 values + 128 as uint8 (zero point 128)."""
    return np.ascontiguousarray((q.astype(np.int16) + ACT_QMAX + 1).astype(np.uint8))
