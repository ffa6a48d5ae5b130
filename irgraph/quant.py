"""Quantized weights: the spec a weight type carries and the numerics that define it.

A quantized parameter has a storage dtype (`i4` for 3 and 4 bits, `i8` for 8) and a `QuantSpec`,
printed in its type: `param @w: i4<g32,sym,f16>[64, 96]`. Its shape is the logical (dequantized)
shape; values are grouped along the last axis (a linear's input features, an embedding's width):
`group` consecutive values share one scale (and one zero point when asymmetric), `ch` (group 0)
means one scale per row, i.e. per output channel.

Storage, in the weight store under the parameter's name and two companions:

    NAME               i4: u8 [*lead, Kp/2], two signed (two's complement) nibbles per byte,
                           element 2j in the low nibble, 2j+1 in the high one (ORT MatMulNBits'
                           order; its unsigned nibbles with implicit zero point 8 are these XOR 8)
                       i8: i8 [*lead, Kp]
    NAME.scales        f16 | f32 [*lead, blocks]
    NAME.zero_points   i8 [*lead, blocks], asymmetric only (signed, in the value range)

Kp is K rounded up to a whole number of groups (per channel: to an even count for i4). The
padding holds the zero point, so it dequantizes to exactly 0: the last group is zero-padded, as
ORT's MatMulNBits pads it.

Numerics (`dequantize` is the meaning; every lowering computes the same expression in fp32):

    w = (float32(q) - float32(z)) * float32(scale)        z = 0 when symmetric

Quantizing (`quantize`, what RTN and later methods round with): scales are chosen in fp32,
rounded to the scale dtype, and q is computed against the *stored* scale, so rounding the scale
never moves a value outside the range:

    symmetric   scale = max|x| / qmax                 q = clamp(round(x / scale), qmin, qmax)
    asymmetric  lo, hi = min(x, 0), max(x, 0)         scale = (hi - lo) / (qmax - qmin)
                z = clamp(round(qmin - lo / scale), qmin, qmax)
                q = clamp(round(x / scale) + z, qmin, qmax)

`round` is round-half-to-even (numpy's and torch's rounding). [qmin, qmax] is [-2^(b-1),
2^(b-1) - 1]: [-8, 7] for 4 bits, [-4, 3] for 3 bits (kept in i4 containers, sized as stored),
[-128, 127] for 8. A group whose values are all zero gets scale 0 and q = z = 0: exact zeros.
Activations quantized per token (W8A8, a linear's `act_quant="i8_token"`; the weight is
i8<ch,sym,...>): dynamic, one scale per row x[..., :] of the linear's input, computed at run time
so prefill and cached decode quantize every token the same way:

    sx = float32(max|x_row|) / 127                 (float32 division)
    qx = clamp(round(x / d), -128, 127)            d = sx, or 1 where sx = 0 (an all-zero row)
    y  = (Σ_k qx·qw) · sx · sw  (+ bias)           the integer dot product (int32 on kernels)

`linear_i8_token` computes y exactly in float64 from the dequantized weight (qw·sw is exact in
float32 for f16 scales) and rounds once to float32; kernels accumulate in int32 and rescale in
float32, within a few float32 ulps of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import IRError

SCALES = ".scales"
ZEROS = ".zero_points"
BITS = (3, 4, 8)
ACT_NONE, ACT_I8_TOKEN = "none", "i8_token"  # a linear's act_quant attribute
ACT_QMAX = 127
SCALE_DTYPES = (DType.f16, DType.f32)


@dataclass(frozen=True)
class QuantSpec:
    """How a weight is quantized: bits, group size (0 = per output channel), zero points, scales."""

    bits: int
    group: int
    sym: bool
    scale_dtype: DType

    def __post_init__(self) -> None:
        if self.bits not in BITS:
            raise IRError("quantized bits", expected=" | ".join(map(str, BITS)), got=self.bits)
        if self.group < 0 or self.group == 1:
            raise IRError("quantization group", expected="0 (per channel) or >= 2", got=self.group)
        if self.scale_dtype not in SCALE_DTYPES:
            raise IRError("quantization scale dtype", expected="f16 | f32", got=self.scale_dtype)

    @property
    def storage(self) -> DType:
        """The container dtype: i4 for 3 and 4 bits, i8 for 8."""
        return DType.i8 if self.bits == 8 else DType.i4

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def __str__(self) -> str:
        parts = [f"b{self.bits}"] if self.bits == 3 else []
        parts += ["ch" if self.group == 0 else f"g{self.group}", "sym" if self.sym else "asym"]
        return ",".join([*parts, str(self.scale_dtype)])

    @staticmethod
    def parse(dtype: DType, items: list[str]) -> QuantSpec:
        """From the text form's `<...>` items, e.g. ["g32", "sym", "f16"] on i4."""
        if dtype not in (DType.i4, DType.i8):
            raise IRError(f"dtype {dtype} cannot be quantized", expected="i4 | i8")
        bits = 8 if dtype is DType.i8 else 4
        group, sym, scale = None, None, None
        for item in items:
            if item.startswith("b") and item[1:].isdigit():
                bits = int(item[1:])
            elif item == "ch":
                group = 0
            elif item.startswith("g") and item[1:].isdigit():
                group = int(item[1:])
            elif item in ("sym", "asym"):
                sym = item == "sym"
            elif item in ("f16", "f32"):
                scale = DType(item)
            else:
                raise IRError(
                    f"unknown quantization item {item!r}", expected="b3, gN | ch, sym | asym, f16"
                )
        if group is None or sym is None or scale is None:
            raise IRError(
                "quantization spec needs a group, sym|asym and a scale dtype",
                expected="e.g. i4<g32,sym,f16>",
                got=",".join(items),
            )
        spec = QuantSpec(bits, group, sym, scale)
        if spec.storage is not dtype:
            raise IRError(f"{bits}-bit values are stored in {spec.storage}", got=str(dtype))
        return spec

    # -- layout ------------------------------------------------------------------------------

    def group_size(self, k: int) -> int:
        """Values per scale along the last axis (K itself per channel)."""
        return self.group or k

    def blocks(self, k: int) -> int:
        return -(-k // self.group_size(k))

    def padded(self, k: int) -> int:
        """K rounded up to whole groups (and to an even count for packed nibbles)."""
        kp = self.blocks(k) * self.group_size(k)
        return kp + kp % 2 if self.storage is DType.i4 else kp

    def stored(self, shape: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Suffix ('' for the data) -> (shape, numpy dtype) of each stored array."""
        if len(shape) < 2:
            raise IRError("a quantized weight has rank >= 2", got=list(shape))
        *lead, k = shape
        kp = self.padded(k)
        data = (*lead, kp // 2) if self.storage is DType.i4 else (*lead, kp)
        dtype = np.dtype(np.uint8 if self.storage is DType.i4 else np.int8)
        result = {
            "": (tuple(data), dtype),
            SCALES: ((*lead, self.blocks(k)), self.scale_dtype.numpy),
        }
        if not self.sym:
            result[ZEROS] = ((*lead, self.blocks(k)), np.dtype(np.int8))
        return result

    def nbytes(self, shape: tuple[int, ...]) -> int:
        return sum(int(np.prod(s)) * d.itemsize for s, d in self.stored(shape).values())


def stored_names(name: str, spec: QuantSpec | None) -> list[str]:
    """The weight-store entries of parameter `name`: itself, plus scales and zeros if quantized."""
    if spec is None:
        return [name]
    return [name + suffix for suffix in spec.stored((1, 2))]


# -- numerics ----------------------------------------------------------------------------------


def grouped(x: np.ndarray, spec: QuantSpec, fill: np.ndarray | float = 0.0) -> np.ndarray:
    """x [*lead, K] as [*lead, blocks, g], the last group padded with `fill`."""
    *lead, k = x.shape
    g, nb = spec.group_size(k), spec.blocks(k)
    out = np.empty((*lead, nb * g), dtype=x.dtype)
    out[..., :k] = x
    out[..., k:] = np.asarray(fill)[..., None] if np.ndim(fill) else fill
    return out.reshape(*lead, nb, g)


def choose_scales(
    x: np.ndarray, spec: QuantSpec, shrink: np.ndarray | float = 1.0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Min/max scales (stored dtype) and zero points (i8, asymmetric only) for x [*lead, K].

    `shrink` (one factor, or one per group [*lead, blocks]) narrows each group's range before
    its scale is chosen; values beyond it clamp (passes/quantize/scale_search.py searches it).
    """
    groups = grouped(np.asarray(x, dtype=np.float32), spec)
    f = np.asarray(shrink, np.float32)
    if spec.sym:
        scale = np.abs(groups).max(axis=-1) * f / np.float32(spec.qmax)
    else:
        lo = np.minimum(groups.min(axis=-1), 0.0) * f
        hi = np.maximum(groups.max(axis=-1), 0.0) * f
        scale = (hi - lo) / np.float32(spec.qmax - spec.qmin)
    with np.errstate(over="ignore"):
        stored = scale.astype(spec.scale_dtype.numpy)
    if not np.all(np.isfinite(stored)):
        raise IRError(
            "weight values overflow the scale dtype",
            expected=f"|scale| <= {np.finfo(spec.scale_dtype.numpy).max}",
            got=float(np.max(scale)),
        )
    if spec.sym:
        return stored, None
    s = stored.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s > 0, np.round(spec.qmin - lo / s), 0.0)
    return stored, np.clip(z, spec.qmin, spec.qmax).astype(np.int8)


def quantize(
    x: np.ndarray, spec: QuantSpec, scales: np.ndarray, zeros: np.ndarray | None = None
) -> np.ndarray:
    """Integer values q, int8 [*lead, Kp], of x [*lead, K] on the given grid (padding holds z)."""
    s = np.asarray(scales).astype(np.float32)[..., None]
    z = np.zeros(s.shape, np.float32) if zeros is None else zeros.astype(np.float32)[..., None]
    groups = grouped(np.asarray(x, dtype=np.float32), spec)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s > 0, np.round(groups / s) + z, z)
    q = np.clip(q, spec.qmin, spec.qmax).astype(np.int8)
    *lead, k = x.shape
    q = q.reshape(*lead, -1)
    kp = spec.padded(k)
    if q.shape[-1] < kp:  # an odd per-channel row of nibbles: one more padding value
        q = np.concatenate([q, z[..., 0, :1].astype(np.int8)], axis=-1)
    return q


def pack(q: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """The stored data of q [*lead, Kp]: nibbles two per byte (low first) for i4, else as is."""
    if spec.storage is DType.i8:
        return np.ascontiguousarray(q, dtype=np.int8)
    nibbles = q.astype(np.uint8) & 0x0F
    return np.ascontiguousarray(nibbles[..., 0::2] | (nibbles[..., 1::2] << 4))


def unpack(data: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """q, int8 [*lead, Kp], from the stored data (sign-extending i4 nibbles)."""
    if spec.storage is DType.i8:
        return np.asarray(data, dtype=np.int8)
    data = np.asarray(data, dtype=np.uint8)
    q = np.empty((*data.shape[:-1], data.shape[-1] * 2), dtype=np.int8)
    q[..., 0::2] = (data & 0x0F).astype(np.int8)
    q[..., 1::2] = (data >> 4).astype(np.int8)
    return np.where(q >= 8, q - 16, q).astype(np.int8)


def quantize_arrays(
    x: np.ndarray, spec: QuantSpec, scales: np.ndarray, zeros: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Suffix -> stored array for x quantized on the given grid (what a weight store holds)."""
    arrays = {"": pack(quantize(x, spec, scales, zeros), spec), SCALES: scales}
    if not spec.sym:
        if zeros is None:
            raise IRError("an asymmetric weight needs zero points")
        arrays[ZEROS] = zeros
    return arrays


def dequantize(
    spec: QuantSpec, shape: tuple[int, ...], arrays: Mapping[str, np.ndarray]
) -> np.ndarray:
    """The float32 weight [*shape] from its stored arrays (suffix -> array): the IR's meaning."""
    *lead, k = shape
    q = unpack(arrays[""], spec).astype(np.float32)
    s = np.asarray(arrays[SCALES]).astype(np.float32)[..., None]
    z = np.asarray(arrays[ZEROS]).astype(np.float32)[..., None] if not spec.sym else 0.0
    g, nb = spec.group_size(k), spec.blocks(k)
    w = (q[..., : nb * g].reshape(*lead, nb, g) - z) * s
    return np.ascontiguousarray(w.reshape(*lead, nb * g)[..., :k])


# -- activations quantized per token (W8A8) ----------------------------------------------------


def quantize_tokens(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(qx int8 [..., K], sx float32 [...]) of x [..., K]: one symmetric scale per row (token)."""
    x = np.asarray(x, dtype=np.float32)
    sx = (np.abs(x).max(axis=-1, initial=np.float32(0)) / np.float32(ACT_QMAX)).astype(np.float32)
    d = np.where(sx > 0, sx, np.float32(1))[..., None]
    q = np.clip(np.round(x / d), -ACT_QMAX - 1, ACT_QMAX)
    return q.astype(np.int8), sx


def linear_i8_token(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """x·Wᵀ with x quantized per token, W [N, K] the dequantized i8 weight qw·sw (float32).

    Σ_k qx·(qw·sw) = sw·Σ_k qx·qw exactly in float64 (integers below 2^53), times sx, then one
    rounding to float32: the module docstring's definition.
    """
    qx, sx = quantize_tokens(x)
    acc = qx.astype(np.float64) @ np.asarray(weight, dtype=np.float64).T
    return (acc * sx.astype(np.float64)[..., None]).astype(np.float32)
