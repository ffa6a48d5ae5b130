"""GGML block types -> the IR's quantized form, bit for bit, where the IR has one.

    Q8_0  f16 d, 32 int8 q                           -> i8<g32,sym,f16>   q
    Q4_0  f16 d, 16 bytes: q_j = lo_j - 8, q_{j+16} = hi_j - 8   -> i4<g32,sym,f16>
    Q5_0  f16 d, u32 high bits, 16 bytes of low nibbles: q in [-16, 15]   -> i8<g32,sym,f16>
    Q4_1  f16 d, f16 m, nibbles n: w = d·n + m       -> i4<g32,asym,f16>  q = n - 8,
          z = -m/d - 8, only where every z is an integer in [-8, 7] (irgraph's writer makes
          such files; llama.cpp's quantizer, whose m is the block minimum, almost never does)
    Q6_K  256-blocks: f16 d, 16 int8 sub-scales s, 6-bit q - 32  -> i8<g16,sym,f32>
          scale = f32(d)·f32(s), exact in f32 (11 + 8 significant bits)

Each is the inverse of `codegen/gguf/tensors.py`'s repacking where that has one, and in every
case gguf-py's `gguf.quants.dequantize` of the block tensor, d·q (or d·n + m), equals the IR's
`irgraph.quant.dequantize`, float32(q - z)·float32(scale), bit for bit (tests check both).
The other k-quants (Q2_K, Q4_K, Q5_K: a per-block minimum that is no integer zero point) and
the IQ types have no exact IR form: `blocks_to_ir` returns None and the importer refuses or
dequantizes them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from irgraph.dtypes import DType
from irgraph.quant import SCALES, ZEROS, QuantSpec, dequantize, pack

QK, QK_K = 32, 256
Arrays = dict[str, np.ndarray]


def _blocks(raw: np.ndarray, k: int, width: int, size: int) -> np.ndarray:
    """raw [*lead, row bytes] as [*lead, k / width, size] block records."""
    return np.ascontiguousarray(raw).reshape(*raw.shape[:-1], k // width, size)


def _f16(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view(np.float16)[..., 0]  # [.., 2 bytes] -> [..]


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """16 bytes per block -> 32 values: the low nibbles first, then the high ones (GGML order)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _q8_0(raw: np.ndarray, k: int) -> tuple[QuantSpec, Arrays]:
    b = _blocks(raw, k, QK, 34)
    q = np.ascontiguousarray(b[..., 2:]).view(np.int8).reshape(*raw.shape[:-1], k)
    spec = QuantSpec(8, QK, True, DType.f16)
    return spec, {"": q, SCALES: _f16(b[..., :2])}


def _q4_0(raw: np.ndarray, k: int) -> tuple[QuantSpec, Arrays]:
    b = _blocks(raw, k, QK, 18)
    q = _nibbles(b[..., 2:]).astype(np.int8) - 8  # [.., blocks, 32] in [-8, 7]
    spec = QuantSpec(4, QK, True, DType.f16)
    return spec, {"": pack(q.reshape(*raw.shape[:-1], k), spec), SCALES: _f16(b[..., :2])}


def _q5_0(raw: np.ndarray, k: int) -> tuple[QuantSpec, Arrays]:
    b = _blocks(raw, k, QK, 22)
    high = np.ascontiguousarray(b[..., 2:6]).view(np.uint32)  # [.., blocks, 1]: bit j = value j
    bits = ((high >> np.arange(QK, dtype=np.uint32)) & 1).astype(np.uint8)
    q = (_nibbles(b[..., 6:]) | (bits << 4)).astype(np.int8) - 16  # [-16, 15]
    spec = QuantSpec(8, QK, True, DType.f16)
    return spec, {"": q.reshape(*raw.shape[:-1], k), SCALES: _f16(b[..., :2])}


def _q4_1(raw: np.ndarray, k: int) -> tuple[QuantSpec, Arrays] | None:
    b = _blocks(raw, k, QK, 20)
    d, m = _f16(b[..., :2]), _f16(b[..., 2:4])
    d64, m64 = d.astype(np.float64), m.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(d64 != 0, -m64 / d64 - 8, -8.0)  # d = 0: every value is m, exact if m = 0
    if not (np.all(z == np.round(z)) and np.all((z >= -8) & (z <= 7))):
        return None
    q = _nibbles(b[..., 4:]).astype(np.int8) - 8
    spec = QuantSpec(4, QK, False, DType.f16)
    lead = raw.shape[:-1]
    return spec, {"": pack(q.reshape(*lead, k), spec), SCALES: d, ZEROS: z.astype(np.int8)}


def _q6_k(raw: np.ndarray, k: int) -> tuple[QuantSpec, Arrays]:
    b = _blocks(raw, k, QK_K, 210)  # ql 128 | qh 64 | scales 16 (int8) | d f16
    lead, n = raw.shape[:-1], k // QK_K
    shifts = np.array([0, 4], np.uint8).reshape(2, 1)
    low = (b[..., :128].reshape(*lead, n, 2, 1, 64) >> shifts) & 0x0F  # 4 low bits
    shifts = np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    high = (b[..., 128:192].reshape(*lead, n, 2, 1, 32) >> shifts) & 0x03  # 2 high bits
    both = low.reshape(*lead, n, 8, 32) | (high.reshape(*lead, n, 8, 32) << 4)
    q = both.astype(np.int8) - 32  # [-32, 31]
    sub = np.ascontiguousarray(b[..., 192:208]).view(np.int8).astype(np.float32)
    scales = _f16(b[..., 208:210]).astype(np.float32)[..., None] * sub  # [.., n, 16], exact
    spec = QuantSpec(8, 16, True, DType.f32)
    return spec, {"": q.reshape(*lead, k), SCALES: scales.reshape(*lead, n * 16)}


EXACT: dict[str, Callable[[np.ndarray, int], tuple[QuantSpec, Arrays] | None]] = {
    "Q8_0": _q8_0,  # i8<g32,sym,f16>
    "Q4_0": _q4_0,  # i4<g32,sym,f16>
    "Q5_0": _q5_0,  # i8<g32,sym,f16> (5-bit values in 8-bit containers)
    "Q4_1": _q4_1,  # i4<g32,asym,f16> where the minimum is an integer zero point
    "Q6_K": _q6_k,  # i8<g16,sym,f32>
}
SPECS = {
    "Q8_0": QuantSpec(8, QK, True, DType.f16),
    "Q4_0": QuantSpec(4, QK, True, DType.f16),
    "Q5_0": QuantSpec(8, QK, True, DType.f16),
    "Q4_1": QuantSpec(4, QK, False, DType.f16),
    "Q6_K": QuantSpec(8, 16, True, DType.f32),
}
WIDTH = {"Q8_0": QK, "Q4_0": QK, "Q5_0": QK, "Q4_1": QK, "Q6_K": QK_K}
DATA_DEPENDENT = ("Q4_1",)  # exact or not by the values: `blocks_to_ir` decides


def exact_spec(ggml: str, shape: tuple[int, ...]) -> QuantSpec | None:
    """The IR form a `ggml` tensor of `shape` converts to exactly (Q4_1: if its values allow)."""
    if ggml not in SPECS or shape[-1] % WIDTH[ggml]:
        return None
    return SPECS[ggml]


def blocks_to_ir(
    ggml: str, raw: np.ndarray, shape: tuple[int, ...]
) -> tuple[QuantSpec, Arrays] | None:
    """The IR's quantized form of a GGML block tensor (raw bytes [*lead, row bytes]) of logical
    `shape`, or None where the IR has no form that dequantizes to gguf's values bit for bit."""
    if exact_spec(ggml, shape) is None:
        return None
    result = EXACT[ggml](np.asarray(raw, dtype=np.uint8), shape[-1])
    if result is None or ggml not in DATA_DEPENDENT:
        return result
    # Q4_1's zero points are data-dependent: check the arithmetic too (a zero value's sign, a
    # negative d), so "exact" is what gguf computes, not only what the algebra promises
    import gguf

    spec, arrays = result
    ours = dequantize(spec, shape, arrays)
    theirs = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_1).reshape(shape)
    return result if ours.tobytes() == np.ascontiguousarray(theirs).tobytes() else None


__all__ = ["DATA_DEPENDENT", "EXACT", "SPECS", "blocks_to_ir", "exact_spec"]
