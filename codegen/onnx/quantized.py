"""Quantized weights in ONNX: MatMulNBits for linears, an explicit dequantize for other uses.

The IR stores signed values (i4 nibbles or i8, irgraph/quant.py); ORT's MatMulNBits wants
unsigned ones with an implicit zero point of 2^(bits-1) (8 for 4 bits, 128 for 8 bits), so each
stored byte is XORed with 0x88 (nibbles) or 0x80 and zero points get 2^(bits-1) added. Nibble
order is the same (element 2j in the low nibble). 3-bit weights run as 4-bit ones: their values
[-4, 3] are 4-bit values.

- `ort` flavour, a linear whose group is a power of two >= 16 (or per channel with such a K):
  one `com.microsoft` MatMulNBits with the compile option `accuracy_level`: 1 (the default)
  computes in fp32, dequantizing exactly as the interpreter, (q - z) * scale, then multiplying;
  4 quantizes the activations per block to int8 and runs integer dot products (faster on CPUs,
  approximate: the error is measured in tests/test_onnx_quant_kernels.py). 8-bit weights take
  it at level 4 only (`use_matmul_nbits`).
- `ort` flavour, an embedding table with such a group: one GatherBlockQuantized (the table stays
  packed; the gathered rows are dequantized exactly).
- Everything else (the portable flavour, other groups, a tied LM head read by an embedding
  besides): the weight is unpacked and dequantized by standard ops (BitwiseAnd, BitShift,
  Cast, Sub, Mul) into the float tensor the op reads; ORT folds that subgraph at load time.
- MoE expert stacks are read through `Emitter.weight`, which dequantizes at export: their
  float initializer computes the same numbers (QMoE is the kernels issue's).
"""

from __future__ import annotations

import numpy as np

from irgraph.codegen.onnx.emitter import Emitter
from irgraph.dtypes import DType
from irgraph.ir import Value
from irgraph.quant import SCALES, ZEROS, QuantSpec


def _spec(v: Value) -> tuple[QuantSpec, tuple[int, ...]]:
    spec = v.type.quant
    assert spec is not None  # callers check v.type.quant first
    return spec, tuple(int(d) for d in v.type.shape)  # type: ignore[arg-type]  # params are static


def _offset(spec: QuantSpec) -> int:
    return 128 if spec.storage is DType.i8 else 8


def _unsigned(e: Emitter, v: Value) -> np.ndarray:
    """The stored data as ORT's unsigned values: u8 [*lead, Kp/2] (nibbles) or [*lead, Kp]."""
    spec, _ = _spec(v)
    data = np.asarray(e.graph.stored(v.param or "")[""])
    if spec.storage is DType.i8:
        return data.view(np.uint8) ^ np.uint8(0x80)
    return data ^ np.uint8(0x88)


def _zeros_unsigned(e: Emitter, v: Value) -> np.ndarray | None:
    """Zero points + 2^(bits-1) as u8 [*lead, blocks], None when symmetric."""
    spec, _ = _spec(v)
    if spec.sym:
        return None
    z = np.asarray(e.graph.stored(v.param or "")[ZEROS]).astype(np.int16)
    return (z + _offset(spec)).astype(np.uint8)


def _scales(e: Emitter, v: Value) -> np.ndarray:
    return np.asarray(e.graph.stored(v.param or "")[SCALES]).astype(np.float32)


def block_size(v: Value) -> int:
    """MatMulNBits' block_size for this weight, 0 when it has none (not a power of two >= 16)."""
    spec, shape = _spec(v)
    g = spec.group_size(shape[-1])
    if (
        len(shape) != 2
        or g < 16
        or g & (g - 1)
        or spec.padded(shape[-1]) != spec.blocks(shape[-1]) * g
    ):
        return 0
    return g


def use_matmul_nbits(e: Emitter, v: Value) -> bool:
    """Whether the linear weight v lowers to MatMulNBits (else to the explicit dequantize).

    ORT 1.32's CPU MatMulNBits has no fast fp32 kernel for 8 bits: 32000x256 at M=1 takes 32 ms
    at accuracy_level 1 against 0.6 ms at 4 (4 bits: 1.6 ms and 0.4 ms). So 8-bit weights take
    MatMulNBits only at level 4; at level 1 they are dequantized by standard ops, which ORT
    folds into a float initializer at load (f32 MatMul speed, float memory, exact numbers).
    """
    spec, _ = _spec(v)
    nbits_ok = spec.storage is DType.i4 or e.accuracy_level == 4
    return e.flavour == "ort" and bool(block_size(v)) and nbits_ok


def matmul_nbits(e: Emitter, x: str, v: Value, out: str) -> str:
    """x · Wᵀ for a quantized W [N, K] as one MatMulNBits (check `block_size(v)` first)."""
    spec, (n, k) = _spec(v)
    g, nb = block_size(v), spec.blocks(k)
    bits = 8 if spec.storage is DType.i8 else 4
    name = v.param or ""
    b = e.derived(f"{name}.nbits", lambda: _unsigned(e, v).reshape(n, nb, g * bits // 8))
    scales = e.derived(f"{name}.nbits_scales", lambda: _scales(e, v).reshape(-1))
    inputs = [x, b, scales]
    if not spec.sym:
        zeros = e.derived(f"{name}.nbits_zeros", lambda: _zeros_packed(e, v).reshape(-1))
        inputs.append(zeros)
    return e.op(
        "MatMulNBits",
        inputs,
        [out],
        domain="com.microsoft",
        K=k,
        N=n,
        bits=bits,
        block_size=g,
        accuracy_level=e.accuracy_level,
    )[0]


def _zeros_packed(e: Emitter, v: Value) -> np.ndarray:
    """Unsigned zero points [N, blocks] (8 bits) or two per byte, low first [N, ⌈blocks/2⌉] (4)."""
    spec, (n, k) = _spec(v)
    z = _zeros_unsigned(e, v)
    assert z is not None  # asymmetric
    if spec.storage is DType.i8:
        return z
    z = np.concatenate([z, np.zeros((n, spec.blocks(k) % 2), np.uint8)], axis=1)  # whole bytes
    return z[:, 0::2] | (z[:, 1::2] << 4)


def gather_block_quantized(e: Emitter, ids: str, v: Value, out: str) -> str:
    """Rows `ids` of a quantized table [V, D] as one GatherBlockQuantized (check `block_size`).

    The table stays packed (ORT's layout, as for MatMulNBits); the op dequantizes only the rows
    it gathers, (q - z) · scale, exactly the interpreter's numbers.
    """
    spec, (rows, k) = _spec(v)
    g, name = block_size(v), v.param or ""
    # not MatMulNBits' 3-D `.nbits`: a tied LM head reads the same bytes in that shape (both ops
    # want constant initializers, so a tied table is stored twice)
    data = e.derived(f"{name}.nbits2d", lambda: _unsigned(e, v))
    inputs = [data, ids, e.derived(f"{name}.nbits_scales2d", lambda: _scales(e, v))]
    if not spec.sym:
        inputs.append(e.derived(f"{name}.nbits_zeros2d", lambda: _zeros_packed(e, v)))
    padded = spec.blocks(k) * g != k  # the op returns whole groups: cut the padding off
    y = e.op(
        "GatherBlockQuantized",
        inputs,
        [e.fresh("gathered")] if padded else [out],
        domain="com.microsoft",
        bits=8 if spec.storage is DType.i8 else 4,
        block_size=g,
        gather_axis=0,
        quantize_axis=1,
    )[0]
    if padded:
        return e.op("Slice", [y, e.ints(0), e.ints(k), e.ints(-1)], [out])[0]
    return y


def dequantized(e: Emitter, v: Value) -> str:
    """The float weight [*shape] computed from the quantized initializers (memoized per param)."""
    key = ("dequantized", v.param)
    if key in e.memo:
        return e.memo[key]
    spec, shape = _spec(v)
    *lead, k = shape
    name = v.param or ""
    g, nb = spec.group_size(k), spec.blocks(k)
    kp = spec.padded(k)
    data = e.derived(f"{name}.quantized", lambda: _unsigned(e, v))
    if spec.storage is DType.i4:  # two nibbles per byte, low first: [*lead, Kp/2] -> [*lead, Kp]
        low = e.op1("BitwiseAnd", data, e.const(np.uint8(0x0F), np.uint8))
        high = e.op1("BitShift", data, e.const(np.uint8(4), np.uint8), direction="RIGHT")
        pairs = e.op1(
            "Concat",
            e.op1("Unsqueeze", low, e.ints(-1)),
            e.op1("Unsqueeze", high, e.ints(-1)),
            axis=-1,
        )
        data = e.op1("Reshape", pairs, e.ints(*lead, kp))
    q = e.op1("Cast", data, to=e.onnx_type(DType.f32))  # the compute dtype
    if kp != nb * g:  # an odd per-channel row of nibbles: drop the extra one
        q = e.op1("Slice", q, e.ints(0), e.ints(nb * g), e.ints(-1))
    q = e.op1("Reshape", q, e.ints(*lead, nb, g))
    zero = (
        e.const(float(_offset(spec)))
        if spec.sym
        else e.derived(f"{name}.zero_float", lambda: _zero_float(e, v))
    )
    scales = e.derived(f"{name}.scale_float", lambda: _scales(e, v)[..., None])
    w = e.op1("Mul", e.op1("Sub", q, zero), scales)
    w = e.op1("Reshape", w, e.ints(*lead, nb * g))
    if nb * g != k:  # the zero-padded last group
        w = e.op1("Slice", w, e.ints(0), e.ints(k), e.ints(-1))
    e.memo[key] = w
    return w


def _zero_float(e: Emitter, v: Value) -> np.ndarray:
    z = _zeros_unsigned(e, v)
    assert z is not None
    return z.astype(np.float32)[..., None]
