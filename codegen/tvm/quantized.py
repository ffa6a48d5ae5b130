"""Quantized weights in Relax: the stored arrays are `forward` arguments, dequantized in-graph.

A quantized parameter becomes two or three weight arguments, named by their weight-store
entries (`W`, `W.scales`, `W.zero_points`), so the runtime loads them as it loads any weight.
At the top of `forward` one TE kernel computes the float weight exactly as
`irgraph.quant.dequantize` does, (float32(q) - float32(z)) * float32(scale), with nibbles
sign-extended low first; the ops then read that float tensor like any other weight. This is
the correctness lowering; fused dequantize-matmul kernels are the kernels issue's.
"""

from __future__ import annotations

from tvm import relax, te, tirx

from irgraph.dtypes import DType
from irgraph.quant import SCALES, ZEROS, QuantSpec


def _dequantize(
    data: te.Tensor,
    scales: te.Tensor,
    zeros: te.Tensor | None,
    spec: QuantSpec,
    shape: tuple[int, ...],
) -> te.Tensor:
    k = shape[-1]
    g = spec.group_size(k)

    def rule(*idx: tirx.PrimExpr) -> tirx.PrimExpr:
        *lead, j = idx
        block = tuple(lead) + (j // g,)
        if spec.storage is DType.i4:
            byte = data[tuple(lead) + (j // 2,)].astype("int32")
            nibble = tirx.bitwise_and(tirx.shift_right(byte, (j % 2 * 4).astype("int32")), 15)
            q = tirx.Select(nibble >= 8, nibble - 16, nibble).astype("float32")
        else:
            q = data[tuple(lead) + (j,)].astype("float32")
        if zeros is not None:
            q = q - zeros[block].astype("float32")
        return q * scales[block].astype("float32")

    return te.compute(shape, rule, name="dequantize")


def stored_parts(spec: QuantSpec) -> tuple[str, ...]:
    """The weight-store suffixes of a quantized weight, in argument order."""
    return ("", SCALES) if spec.sym else ("", SCALES, ZEROS)


def dequantized(
    bb: relax.BlockBuilder, spec: QuantSpec, shape: tuple[int, ...], parts: list[relax.Expr]
) -> relax.Expr:
    """The float32 weight from its stored-part arguments (data, scales[, zero points])."""
    data, scales, *rest = parts
    zeros = rest[0] if rest else None

    def compute(d: te.Tensor, s: te.Tensor, *z: te.Tensor) -> te.Tensor:
        return _dequantize(d, s, z[0] if z else None, spec, shape)

    args = [data, scales] + ([zeros] if zeros is not None else [])
    return bb.emit_te(compute, *args, primfunc_name_hint="dequantize")
