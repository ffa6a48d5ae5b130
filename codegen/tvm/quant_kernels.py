"""Linear layers on quantized weights: the weight stays packed in memory, unpacked in registers.

Stock TVM (and `quantized.py`'s correctness lowering) materialises the float weight every call
and then multiplies: a decode step streams the int4 weight, writes and re-reads eight times its
bytes in fp32. Here a linear whose weight is quantized reads the stored parts directly, regrouped
once at load time exactly as `linear.py` regroups float weights (`packed{nb}`: [N, C] ->
[N/nb, C, nb] for the data, the scales and the zero points alike), so for every reduction step the
kernel loads nb output rows' bytes with unit stride:

    data    i4: u8 [N/nb, Kp/2, nb]  byte (no, c, j) holds k = 2c (low nibble) and 2c+1 (high)
            i8: i8 [N/nb, Kp, nb]
    scales  [N/nb, G, nb] (f16 | f32),  zero points i8 [N/nb, G, nb] (asymmetric only)

Two tile shapes, both parallel over the N/nb blocks:

- decode rows (one token at a time, what M = batch·seq = 1 runs): per group, the integer weights
  are unpacked (sign-extending shifts, one convert) and FMA'd into a group accumulator; at the end
  of the group `acc += scale · (gacc - zero · Σx)`. One multiply-add per weight, the scale and zero
  point once per group, as llama.cpp's q4_0 dot and T-MAC's group-wise scaling do.
- prefill tiles (mt tokens): for every k the nb weights are dequantized to fp32 in registers,
  (q - z) · s exactly as `irgraph.quant.dequantize`, and that panel serves mt tokens, so the
  unpacking is paid once per tile.

Only whole groups go through the pair loops; a last group cut short by K (and per-channel groups of
odd length) goes one value at a time, reading only x[:, :K]. The interpreter's reference
dequantizes and multiplies; these kernels reassociate the group sums, so they agree to rounding.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from irgraph.quant import QuantSpec

_OPAQUE = 8  # relax OpPatternKind.kOpaque: FuseOps leaves the kernel as written


def fusable(spec: QuantSpec, k: int) -> bool:
    """Whether a [N, K] weight of this spec runs on the fused kernels (else it is materialised).

    Nibble pairs must not straddle groups: i4 needs an even group (per channel is one group).
    """
    return spec.storage.name == "i8" or spec.group == 0 or spec.group % 2 == 0


def quantized_kernel(
    n: int, k: int, nb: int, spec: QuantSpec, mt: int = 4, dtype: str = "float32"
) -> tirx.PrimFunc:
    """y[m, n] = Σ_k x[m, k] · dequantize(W)[n, k], W packed as in the module docstring."""
    g = spec.group_size(k)
    nibbles = spec.storage.name == "i4"
    step = 2 if nibbles else 1  # values per stored element
    cols = spec.padded(k) // step
    groups = spec.blocks(k)
    full = k // g if g % step == 0 else 0  # groups whose g values all lie below K, in pairs
    tail = k - full * g  # values of the last group when short (or odd: per channel), one by one
    s_dtype = str(spec.scale_dtype.numpy)
    asym, blocks, half, zero = not spec.sym, n // nb, mt // 2, 0.0

    @T.macro(hygienic=True)
    def values(w, no, c, j, lo, hi):  # type: ignore[no-untyped-def]  # TVMScript macro
        """The one or two int weights stored at w[no, c, j], as dtype, into lo[j] (and hi[j]).

        Written without a let-bound byte: a `let` inside a vectorised loop of a macro came out
        as one scalar for all lanes in TVM 0.27 (wrong weights, no error).
        """
        if nibbles:
            lo[j] = T.Cast(
                dtype, T.bitwise_xor(T.bitwise_and(T.Cast("int32", w[no, c, j]), 15), 8) - 8
            )
            hi[j] = T.Cast(
                dtype, T.bitwise_xor(T.shift_right(T.Cast("int32", w[no, c, j]), 4), 8) - 8
            )
        else:
            lo[j] = T.Cast(dtype, w[no, c, j])

    @T.macro(hygienic=True)
    def one_value(w, no, kk, j, out):  # type: ignore[no-untyped-def]
        """The int weight of value kk (any position) as dtype, into out[j]."""
        if nibbles:
            out[j] = T.Cast(
                dtype,
                T.bitwise_xor(
                    T.bitwise_and(
                        T.shift_right(T.Cast("int32", w[no, kk // 2, j]), kk % 2 * 4), 15
                    ),
                    8,
                )
                - 8,
            )
        else:
            out[j] = T.Cast(dtype, w[no, kk, j])

    @T.macro(hygienic=True)
    def biased(w, no, c, j, lo, hi):  # type: ignore[no-untyped-def]
        """The two nibbles at w[no, c, j] plus 8 (unsigned: byte XOR 0x88), as dtype.

        One op fewer per value than sign-extending; the 8 comes off once per group.
        """
        lo[j] = T.Cast(dtype, T.bitwise_and(T.bitwise_xor(T.Cast("int32", w[no, c, j]), 136), 15))
        hi[j] = T.Cast(dtype, T.shift_right(T.bitwise_xor(T.Cast("int32", w[no, c, j]), 136), 4))

    @T.macro(hygienic=True)
    def group_end(s, z, no, gi, acc, gacc, xs, bias):  # type: ignore[no-untyped-def]
        """acc += scale · (gacc - (zero + bias) · Σx) for group gi."""
        if asym:
            for j in T.vectorized(nb):
                acc[j] = acc[j] + (
                    gacc[j] - (T.Cast(dtype, z[no, gi, j]) + T.cast(bias, dtype)) * xs[0]
                ) * T.Cast(dtype, s[no, gi, j])
        elif nibbles:
            for j in T.vectorized(nb):
                acc[j] = acc[j] + (gacc[j] - T.cast(bias, dtype) * xs[0]) * T.Cast(
                    dtype, s[no, gi, j]
                )
        else:
            for j in T.vectorized(nb):
                acc[j] = acc[j] + gacc[j] * T.Cast(dtype, s[no, gi, j])

    @T.macro(hygienic=True)
    def decode_row(x, w, s, z, y, no, r, acc, gacc, lo, hi, xs):  # type: ignore[no-untyped-def]
        """Row r of y for the nb features of block no: group accumulators, scaled per group."""
        for j in T.vectorized(nb):
            acc[j] = T.cast(zero, dtype)
        for gi in range(full):
            for j in T.vectorized(nb):
                gacc[j] = T.cast(zero, dtype)
            xs[0] = T.cast(zero, dtype)
            for c in range(g // step):
                if nibbles:
                    for j in T.vectorized(nb):
                        biased(w, no, gi * (g // step) + c, j, lo, hi)
                    for j in T.vectorized(nb):
                        gacc[j] = (
                            gacc[j]
                            + x[r, gi * g + 2 * c] * lo[j]
                            + x[r, gi * g + 2 * c + 1] * hi[j]
                        )
                    xs[0] = xs[0] + x[r, gi * g + 2 * c] + x[r, gi * g + 2 * c + 1]
                else:
                    for j in T.vectorized(nb):
                        values(w, no, gi * (g // step) + c, j, lo, hi)
                    for j in T.vectorized(nb):
                        gacc[j] = gacc[j] + x[r, gi * g + c] * lo[j]
                    if asym:
                        xs[0] = xs[0] + x[r, gi * g + c]
            group_end(s, z, no, gi, acc, gacc, xs, 8.0 if nibbles else 0.0)
        if tail > 0:
            for j in T.vectorized(nb):
                gacc[j] = T.cast(zero, dtype)
            xs[0] = T.cast(zero, dtype)
            for t in range(tail):
                for j in T.vectorized(nb):
                    one_value(w, no, full * g + t, j, lo)
                for j in T.vectorized(nb):
                    gacc[j] = gacc[j] + x[r, full * g + t] * lo[j]
                if asym:
                    xs[0] = xs[0] + x[r, full * g + t]
            group_end(s, z, no, full, acc, gacc, xs, 0.0)
        for j in T.vectorized(nb):
            y[r, no * nb + j] = acc[j]

    @T.macro(hygienic=True)
    def scaled(q, s, z, no, gi, j, out):  # type: ignore[no-untyped-def]
        """out[j] = (q[j] - z) · s for group gi: the exact dequantized weight."""
        if asym:
            out[j] = (q[j] - T.Cast(dtype, z[no, gi, j])) * T.Cast(dtype, s[no, gi, j])
        else:
            out[j] = q[j] * T.Cast(dtype, s[no, gi, j])

    @T.macro(hygienic=True)
    def tile(x, w, s, z, y, no, r0, rows, tacc, lo, hi):  # type: ignore[no-untyped-def]
        """Rows r0 .. r0+rows of y: each dequantized weight panel serves `rows` tokens."""
        for i in T.unroll(rows):
            for j in T.vectorized(nb):
                tacc[i, j] = T.cast(zero, dtype)
        for gi in range(full):
            for c in range(g // step):
                for j in T.vectorized(nb):
                    values(w, no, gi * (g // step) + c, j, lo, hi)
                for j in T.vectorized(nb):
                    scaled(lo, s, z, no, gi, j, lo)
                if nibbles:
                    for j in T.vectorized(nb):
                        scaled(hi, s, z, no, gi, j, hi)
                    for i in T.unroll(rows):
                        for j in T.vectorized(nb):
                            tacc[i, j] = (
                                tacc[i, j]
                                + x[r0 + i, gi * g + 2 * c] * lo[j]
                                + x[r0 + i, gi * g + 2 * c + 1] * hi[j]
                            )
                else:
                    for i in T.unroll(rows):
                        for j in T.vectorized(nb):
                            tacc[i, j] = tacc[i, j] + x[r0 + i, gi * g + c] * lo[j]
        if tail > 0:
            for t in range(tail):
                for j in T.vectorized(nb):
                    one_value(w, no, full * g + t, j, lo)
                for j in T.vectorized(nb):
                    scaled(lo, s, z, no, full, j, lo)
                for i in T.unroll(rows):
                    for j in T.vectorized(nb):
                        tacc[i, j] = tacc[i, j] + x[r0 + i, full * g + t] * lo[j]
        for i in T.unroll(rows):
            for j in T.vectorized(nb):
                y[r0 + i, no * nb + j] = tacc[i, j]

    @T.macro(hygienic=True)
    def body(x, w, s, z, y, m):  # type: ignore[no-untyped-def]
        for no in T.parallel(blocks):
            tacc = T.decl_buffer((mt, nb), dtype, scope="local")
            acc = T.decl_buffer((nb,), dtype, scope="local")
            gacc = T.decl_buffer((nb,), dtype, scope="local")
            lo = T.decl_buffer((nb,), dtype, scope="local")
            hi = T.decl_buffer((nb,), dtype, scope="local")
            xs = T.decl_buffer((1,), dtype, scope="local")
            for mo in range(m // mt):
                tile(x, w, s, z, y, no, mo * mt, mt, tacc, lo, hi)
            if half > 1:  # a half tile of the leftover tokens, then one at a time
                if m % mt >= half:
                    tile(x, w, s, z, y, no, m - m % mt, half, tacc, lo, hi)
                for r in range(m % mt % half):
                    decode_row(x, w, s, z, y, no, m - m % mt % half + r, acc, gacc, lo, hi, xs)
            else:
                for r in range(m % mt):
                    decode_row(x, w, s, z, y, no, m - m % mt + r, acc, gacc, lo, hi, xs)

    w_dtype = "uint8" if nibbles else "int8"
    if asym:

        @T.prim_func(private=True)
        def kernel_asym(
            x_handle: T.handle,
            w_handle: T.handle,
            s_handle: T.handle,
            z_handle: T.handle,
            y_handle: T.handle,
        ) -> None:
            T.func_attr({"tirx.noalias": True})
            m = T.int64()
            x = T.match_buffer(x_handle, (m, k), dtype)
            w = T.match_buffer(w_handle, (blocks, cols, nb), w_dtype)
            s = T.match_buffer(s_handle, (blocks, groups, nb), s_dtype)
            z = T.match_buffer(z_handle, (blocks, groups, nb), "int8")
            y = T.match_buffer(y_handle, (m, n), dtype)
            body(x, w, s, z, y, m)

        return kernel_asym.with_attr("op_pattern", _OPAQUE)

    @T.prim_func(private=True)
    def kernel(
        x_handle: T.handle, w_handle: T.handle, s_handle: T.handle, y_handle: T.handle
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        m = T.int64()
        x = T.match_buffer(x_handle, (m, k), dtype)
        w = T.match_buffer(w_handle, (blocks, cols, nb), w_dtype)
        s = T.match_buffer(s_handle, (blocks, groups, nb), s_dtype)
        y = T.match_buffer(y_handle, (m, n), dtype)
        body(x, w, s, None, y, m)

    return kernel.with_attr("op_pattern", _OPAQUE)
