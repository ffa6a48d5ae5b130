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


def _value(
    data: te.Tensor,
    scales: te.Tensor,
    zeros: te.Tensor | None,
    spec: QuantSpec,
    k: int,
    lead: tuple[tirx.PrimExpr, ...],
    j: tirx.PrimExpr,
) -> tirx.PrimExpr:
    """The float32 weight at (*lead, j), as `irgraph.quant.dequantize` computes it."""
    block = tuple(lead) + (j // spec.group_size(k),)
    if spec.storage is DType.i4:
        byte = data[tuple(lead) + (j // 2,)].astype("int32")
        nibble = tirx.bitwise_and(tirx.shift_right(byte, (j % 2 * 4).astype("int32")), 15)
        q = tirx.Select(nibble >= 8, nibble - 16, nibble).astype("float32")
    else:
        q = data[tuple(lead) + (j,)].astype("float32")
    if zeros is not None:
        q = q - zeros[block].astype("float32")
    return q * scales[block].astype("float32")


def _dequantize(
    data: te.Tensor,
    scales: te.Tensor,
    zeros: te.Tensor | None,
    spec: QuantSpec,
    shape: tuple[int, ...],
) -> te.Tensor:
    def rule(*idx: tirx.PrimExpr) -> tirx.PrimExpr:
        *lead, j = idx
        return _value(data, scales, zeros, spec, shape[-1], tuple(lead), j)

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


def gathered(
    bb: relax.BlockBuilder,
    spec: QuantSpec,
    shape: tuple[int, ...],
    parts: list[relax.Expr],
    ids: relax.Expr,
) -> relax.Expr:
    """Rows `ids` of a quantized table [V, D], dequantized row by row: the table stays packed.

    Ids wrap like `take(mode="wrap")` on the float table (-V..V-1); the float32 rows come out.
    """
    rows, width = shape

    def compute(i: te.Tensor, d: te.Tensor, s: te.Tensor, *z: te.Tensor) -> te.Tensor:
        def rule(*idx: tirx.PrimExpr) -> tirx.PrimExpr:
            *pos, j = idx
            row = i[tuple(pos)].astype("int64")
            row = tirx.Select(row < 0, row + rows, row)
            return _value(d, s, z[0] if z else None, spec, width, (row,), j)

        return te.compute((*i.shape, width), rule, name="gather_dequantize")

    return bb.emit_te(compute, ids, *parts, primfunc_name_hint="gather_dequantize")
