"""CPU kernels for the absorbed latent attention: kv_b's per-head products.

They read kv_b in its own layout.

kv_b is [heads·(nope+v_dim), kv_rank]: per head h, rows h·(nope+v_dim) + [0, nope) are W_k
and the next v_dim rows W_v. The two products around the attention
(`lower_attention._latent_attention`) read it in place, no slice or transpose copied per call:

  absorb   q_abs[b, h, s, :] = Σ_n q[b, h, s, n] · kv_b[h·stride + n, :]        n < nope
           (broadcast-FMA of whole kv_b rows, LANES outputs per vector accumulator)
  expand   out[b, h, s, d]  = Σ_r o[b, h, s, r] · kv_b[h·stride + nope + d, r]   d < v_dim
           (a dot product along the contiguous row: a LANES-wide accumulator, then a lane sum)

Both run in parallel over (batch, head, token) and finish partial vectors element by element.
Relax's legalised matmul for the same products (strided, unscheduled) is ~5x slower here.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

_OPAQUE = 8  # relax OpPatternKind.kOpaque: FuseOps leaves the kernel as written
LANES = 16


def absorb_kernel(
    heads: int, dq: int, nope: int, v_dim: int, rank: int, dtype: str, w_dtype: str
) -> tirx.PrimFunc:
    """q_abs [B, H, S, rank] from q [B, H, S, dq] and kv_b [H·(nope+v_dim), rank].

    Only q's first nope entries are used.
    """
    stride, body, zero = nope + v_dim, rank - rank % LANES, 0.0

    @T.prim_func(private=True)
    def kernel(q_handle: T.handle, w_handle: T.handle, y_handle: T.handle) -> None:
        T.func_attr({"tirx.noalias": True})
        b, s = T.int64(), T.int64()
        q = T.match_buffer(q_handle, (b, heads, s, dq), dtype)
        w = T.match_buffer(w_handle, (heads * stride, rank), w_dtype)
        y = T.match_buffer(y_handle, (b, heads, s, rank), dtype)
        for p in T.parallel(b * heads * s):
            acc = T.decl_buffer((LANES,), dtype, scope="local")
            total = T.decl_buffer((1,), dtype, scope="local")
            for c in range(body // LANES):
                for lane in T.vectorized(LANES):
                    acc[lane] = T.cast(zero, dtype)
                for n in range(nope):
                    for lane in T.vectorized(LANES):
                        acc[lane] = acc[lane] + q[
                            p // (heads * s), p // s % heads, p % s, n
                        ] * T.cast(w[p // s % heads * stride + n, c * LANES + lane], dtype)
                for lane in T.vectorized(LANES):
                    y[p // (heads * s), p // s % heads, p % s, c * LANES + lane] = acc[lane]
            for c in range(rank - body):
                total[0] = T.cast(zero, dtype)
                for n in range(nope):
                    total[0] = total[0] + q[p // (heads * s), p // s % heads, p % s, n] * T.cast(
                        w[p // s % heads * stride + n, body + c], dtype
                    )
                y[p // (heads * s), p // s % heads, p % s, body + c] = total[0]

    return kernel.with_attr("op_pattern", _OPAQUE)


def expand_kernel(
    heads: int, nope: int, v_dim: int, rank: int, dtype: str, w_dtype: str
) -> tirx.PrimFunc:
    """out [B, H, S, v_dim] from o [B, H, S, rank] and kv_b's W_v rows."""
    stride, body, zero = nope + v_dim, rank - rank % LANES, 0.0

    @T.prim_func(private=True)
    def kernel(o_handle: T.handle, w_handle: T.handle, y_handle: T.handle) -> None:
        T.func_attr({"tirx.noalias": True})
        b, s = T.int64(), T.int64()
        o = T.match_buffer(o_handle, (b, heads, s, rank), dtype)
        w = T.match_buffer(w_handle, (heads * stride, rank), w_dtype)
        y = T.match_buffer(y_handle, (b, heads, s, v_dim), dtype)
        for p in T.parallel(b * heads * s):
            acc = T.decl_buffer((LANES,), dtype, scope="local")
            total = T.decl_buffer((1,), dtype, scope="local")
            for d in range(v_dim):
                for lane in T.vectorized(LANES):
                    acc[lane] = T.cast(zero, dtype)
                for c in range(body // LANES):
                    for lane in T.vectorized(LANES):
                        acc[lane] = acc[lane] + o[
                            p // (heads * s), p // s % heads, p % s, c * LANES + lane
                        ] * T.cast(w[p // s % heads * stride + nope + d, c * LANES + lane], dtype)
                total[0] = T.cast(zero, dtype)
                for lane in range(LANES):
                    total[0] = total[0] + acc[lane]
                for c in range(rank - body):
                    total[0] = total[0] + o[
                        p // (heads * s), p // s % heads, p % s, body + c
                    ] * T.cast(w[p // s % heads * stride + nope + d, body + c], dtype)
                y[p // (heads * s), p // s % heads, p % s, d] = total[0]

    return kernel.with_attr("op_pattern", _OPAQUE)
