"""CPU kernels for the two attention products, hand-written in TIR like the linear kernel.

TVM legalises `matmul` to an unscheduled loop nest (~2 GFLOP/s here: ~25 ms per
layer for a 128-token prefill, 0.4 ms per layer per decoded token at 256
cached tokens). With the BNSH cache these two products have fixed shapes:

  scores[b, h, i, j] = scale · Σ_d q[b, h, i, d] · k[b, h, j, d]
      16 keys at a time, each with its own accumulator (16 independent FMA
      chains instead of one dependent chain per score), reduction over d.
  out[b, h, i, :]    = Σ_j p[b, h, i, j] · v[b, h, j, :]
      v rows are contiguous along d: one broadcast-FMA per key into a
      register accumulator of the head dim.

Both run in parallel over (batch, head). GPU targets keep Relax's matmul (dlight schedules it).
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from irgraph.codegen.tvm.fast_math import fast_exp

_OPAQUE = 8  # relax OpPatternKind.kOpaque: FuseOps leaves the kernel as written
LANES = 16


def scores_kernel(heads: int, dim: int, scale: float, dtype: str, mt: int = 8) -> tirx.PrimFunc:
    """s [B, H, R, T] = scale · q [B, H, R, D] · k [B, H, T, D]ᵀ.

    Per head, LANES keys at a time: the keys' [LANES, D] block is transposed once
    into a local [D, LANES] buffer (unit-stride vector loads afterwards, instead of
    a strided gather per d), then mt query rows share every loaded key vector from
    registers, like the packed linear kernel (mt·LANES accumulators: mt FMA chains).
    A last partial block of keys is zero-padded and stored element by element.
    """
    lanes, zero = LANES, 0.0

    @T.prim_func(private=True)
    def kernel(q_handle: T.handle, k_handle: T.handle, s_handle: T.handle) -> None:
        T.func_attr({"tirx.noalias": True})
        b, r, t = T.int64(), T.int64(), T.int64()
        q = T.match_buffer(q_handle, (b, heads, r, dim), dtype)
        k = T.match_buffer(k_handle, (b, heads, t, dim), dtype)
        s = T.match_buffer(s_handle, (b, heads, r, t), dtype)
        for bh in T.parallel(b * heads):
            kt = T.decl_buffer((dim, lanes), dtype, scope="local")
            acc = T.decl_buffer((mt, lanes), dtype, scope="local")
            for jo in range((t + lanes - 1) // lanes):
                for jj, d in T.grid(lanes, dim):
                    kt[d, jj] = T.if_then_else(
                        jo * lanes + jj < t,
                        k[bh // heads, bh % heads, jo * lanes + jj, d],
                        T.cast(zero, dtype),
                    )
                for io in range((r + mt - 1) // mt):
                    rows = T.min(mt, r - io * mt)
                    for i in T.unroll(mt):
                        for jj in T.vectorized(lanes):
                            acc[i, jj] = T.cast(zero, dtype)
                    if rows == mt:
                        for d in range(dim):
                            for i in T.unroll(mt):
                                for jj in T.vectorized(lanes):
                                    acc[i, jj] = (
                                        acc[i, jj]
                                        + q[bh // heads, bh % heads, io * mt + i, d] * kt[d, jj]
                                    )
                    else:
                        for i in range(rows):
                            for d in range(dim):
                                for jj in T.vectorized(lanes):
                                    acc[i, jj] = (
                                        acc[i, jj]
                                        + q[bh // heads, bh % heads, io * mt + i, d] * kt[d, jj]
                                    )
                    if jo * lanes + lanes <= t:
                        for i in range(rows):
                            for jj in T.vectorized(lanes):
                                s[bh // heads, bh % heads, io * mt + i, jo * lanes + jj] = acc[
                                    i, jj
                                ] * T.cast(scale, dtype)
                    else:
                        for i in range(rows):
                            for jj in range(t - jo * lanes):
                                s[bh // heads, bh % heads, io * mt + i, jo * lanes + jj] = acc[
                                    i, jj
                                ] * T.cast(scale, dtype)

    return kernel.with_attr("op_pattern", _OPAQUE)


def weighted_sum_kernel(heads: int, dim: int, dtype: str) -> tirx.PrimFunc:
    """o [B, H, R, Dv] = p [B, H, R, T] · v [B, H, T, Dv]."""
    zero = 0.0

    @T.prim_func(private=True)
    def kernel(p_handle: T.handle, v_handle: T.handle, o_handle: T.handle) -> None:
        T.func_attr({"tirx.noalias": True})
        b, r, t = T.int64(), T.int64(), T.int64()
        p = T.match_buffer(p_handle, (b, heads, r, t), dtype)
        v = T.match_buffer(v_handle, (b, heads, t, dim), dtype)
        o = T.match_buffer(o_handle, (b, heads, r, dim), dtype)
        for bh in T.parallel(b * heads):
            acc = T.decl_buffer((dim,), dtype, scope="local")
            for i in range(r):
                for dd in T.vectorized(dim):
                    acc[dd] = T.cast(zero, dtype)
                for j in range(t):
                    for dd in T.vectorized(dim):
                        acc[dd] = (
                            acc[dd]
                            + p[bh // heads, bh % heads, i, j] * v[bh // heads, bh % heads, j, dd]
                        )
                for dd in T.vectorized(dim):
                    o[bh // heads, bh % heads, i, dd] = acc[dd]

    return kernel.with_attr("op_pattern", _OPAQUE)


def softmax_kernel(heads: int, dtype: str) -> tirx.PrimFunc:
    """p [B, H, S, T] = softmax over T of s [B, H, S, T], masked.

    Restricted to the keys `allowed` [B, 1, S, T].

    One pass for the row max, one for e^(s - max) (written out) and its sum, one to
    scale: LANES-wide partial max/sum registers, `fast_exp` (vectorised; TVM's exp is a
    scalar libm call per element). Masked keys get exactly 0 and a row with no
    visible key gives zeros, as the op's reference says (no -inf arithmetic).
    """
    lanes, low = LANES, -3.0e38

    @T.prim_func(private=True)
    def kernel(s_handle: T.handle, a_handle: T.handle, p_handle: T.handle) -> None:
        T.func_attr({"tirx.noalias": True})
        b, sq, t = T.int64(), T.int64(), T.int64()
        s = T.match_buffer(s_handle, (b, heads, sq, t), dtype)
        allowed = T.match_buffer(a_handle, (b, 1, sq, t), "bool")
        p = T.match_buffer(p_handle, (b, heads, sq, t), dtype)
        for row in T.parallel(b * heads * sq):
            part = T.decl_buffer((lanes,), "float32", scope="local")
            red = T.decl_buffer((1,), "float32", scope="local")
            bi = row // (heads * sq)
            h = row // sq % heads
            i = row % sq
            for jj in T.vectorized(lanes):
                part[jj] = T.float32(low)
            for jo in range(t // lanes):
                for jj in T.vectorized(lanes):
                    part[jj] = T.max(
                        part[jj],
                        T.Select(
                            allowed[bi, 0, i, jo * lanes + jj],
                            T.cast(s[bi, h, i, jo * lanes + jj], "float32"),
                            T.float32(low),
                        ),
                    )
            for j in range(t - t % lanes, t):
                part[0] = T.max(
                    part[0],
                    T.Select(
                        allowed[bi, 0, i, j], T.cast(s[bi, h, i, j], "float32"), T.float32(low)
                    ),
                )
            red[0] = T.float32(low)
            for jj in range(lanes):
                red[0] = T.max(red[0], part[jj])
            for jj in T.vectorized(lanes):
                part[jj] = T.float32(0)
            for jo in range(t // lanes):
                for jj in T.vectorized(lanes):
                    p[bi, h, i, jo * lanes + jj] = T.cast(
                        T.Select(
                            allowed[bi, 0, i, jo * lanes + jj],
                            fast_exp(T.cast(s[bi, h, i, jo * lanes + jj], "float32") - red[0]),
                            T.float32(0),
                        ),
                        dtype,
                    )
                    part[jj] = part[jj] + T.cast(p[bi, h, i, jo * lanes + jj], "float32")
            for j in range(t - t % lanes, t):
                p[bi, h, i, j] = T.cast(
                    T.Select(
                        allowed[bi, 0, i, j],
                        fast_exp(T.cast(s[bi, h, i, j], "float32") - red[0]),
                        T.float32(0),
                    ),
                    dtype,
                )
                part[0] = part[0] + T.cast(p[bi, h, i, j], "float32")
            red[0] = T.float32(0)
            for jj in range(lanes):
                red[0] = red[0] + part[jj]
            red[0] = T.Select(red[0] > T.float32(0), T.float32(1) / red[0], T.float32(0))
            for jo in range(t // lanes):
                for jj in T.vectorized(lanes):
                    p[bi, h, i, jo * lanes + jj] = T.cast(
                        T.cast(p[bi, h, i, jo * lanes + jj], "float32") * red[0], dtype
                    )
            for j in range(t - t % lanes, t):
                p[bi, h, i, j] = T.cast(T.cast(p[bi, h, i, j], "float32") * red[0], dtype)

    return kernel.with_attr("op_pattern", _OPAQUE)
