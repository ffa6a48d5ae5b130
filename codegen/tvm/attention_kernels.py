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

_OPAQUE = 8  # relax OpPatternKind.kOpaque: FuseOps leaves the kernel as written
LANES = 16


def scores_kernel(heads: int, dim: int, scale: float, dtype: str) -> tirx.PrimFunc:
    """s [B, H, R, T] = scale · q [B, H, R, D] · k [B, H, T, D]ᵀ."""
    lanes, zero = LANES, 0.0

    @T.prim_func(private=True)
    def kernel(q_handle: T.handle, k_handle: T.handle, s_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        b, r, t = T.int64(), T.int64(), T.int64()
        q = T.match_buffer(q_handle, (b, heads, r, dim), dtype)
        k = T.match_buffer(k_handle, (b, heads, t, dim), dtype)
        s = T.match_buffer(s_handle, (b, heads, r, t), dtype)
        for bh in T.parallel(b * heads):
            acc = T.decl_buffer((lanes,), dtype, scope="local")
            for i in range(r):
                for jo in range(t // lanes):
                    for jj in T.vectorized(lanes):
                        acc[jj] = T.cast(zero, dtype)
                    for d in range(dim):
                        for jj in T.vectorized(lanes):
                            acc[jj] = acc[jj] + q[bh // heads, bh % heads, i, d] * k[
                                bh // heads, bh % heads, jo * lanes + jj, d]
                    for jj in T.vectorized(lanes):
                        s[bh // heads, bh % heads, i, jo * lanes + jj] = acc[jj] * T.cast(scale, dtype)
                for jr in range(t % lanes):
                    acc[0] = T.cast(zero, dtype)
                    for d in range(dim):
                        acc[0] = acc[0] + q[bh // heads, bh % heads, i, d] * k[
                            bh // heads, bh % heads, t - t % lanes + jr, d]
                    s[bh // heads, bh % heads, i, t - t % lanes + jr] = acc[0] * T.cast(scale, dtype)

    return kernel.with_attr("op_pattern", _OPAQUE)


def weighted_sum_kernel(heads: int, dim: int, dtype: str) -> tirx.PrimFunc:
    """o [B, H, R, Dv] = p [B, H, R, T] · v [B, H, T, Dv]."""
    zero = 0.0

    @T.prim_func(private=True)
    def kernel(p_handle: T.handle, v_handle: T.handle, o_handle: T.handle):
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
                        acc[dd] = acc[dd] + p[bh // heads, bh % heads, i, j] * v[bh // heads, bh % heads, j, dd]
                for dd in T.vectorized(dim):
                    o[bh // heads, bh % heads, i, dd] = acc[dd]

    return kernel.with_attr("op_pattern", _OPAQUE)
