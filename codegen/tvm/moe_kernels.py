"""CPU kernels for routed mixture-of-experts projections, hand-written in TIR like the linear kernel.

Each (token, slot) pair reads its expert's weight rows through the router's
index, so only the chosen experts are streamed. Expert weights keep the IR's
[experts, out, in] layout, whose rows are contiguous along the reduction:

  up / gate   h[t, j, f] = Σ_i x[t, i] · W[idx[t, j], f, i]
  down        y[t, o]    = Σ_j w[t, j] · Σ_f h[t, j, f] · W[idx[t, j], o, f]

Both compute `rows` output features at a time, each with a `lanes`-wide vector
accumulator along the reduction (rows independent FMA chains, unit-stride
loads), then sum the lanes; a reduction length that is not a multiple of
`lanes` finishes element by element. Work is split in parallel over
(token, slot, row block) or (token, row block), so a single decoded token
still spreads over the thread pool.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

_OPAQUE = 8  # relax OpPatternKind.kOpaque: FuseOps leaves the kernel as written
LANES = 16


def _rows(n: int) -> int:
    return 4 if n % 4 == 0 else 2 if n % 2 == 0 else 1


def routed_in_kernel(experts: int, ffn: int, hidden: int, k: int, dtype: str, w_dtype: str) -> tirx.PrimFunc:
    """h [T, k, F] from x [T, H], idx [T, k] (int64) and W [E, F, H]."""
    lanes, rows, zero = LANES, _rows(ffn), 0.0
    blocks, body = ffn // rows, hidden - hidden % LANES

    @T.prim_func(private=True)
    def kernel(x_handle: T.handle, idx_handle: T.handle, w_handle: T.handle, h_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        t = T.int64()
        x = T.match_buffer(x_handle, (t, hidden), dtype)
        idx = T.match_buffer(idx_handle, (t, k), "int64")
        w = T.match_buffer(w_handle, (experts, ffn, hidden), w_dtype)
        h = T.match_buffer(h_handle, (t, k, ffn), dtype)
        for p in T.parallel(t * k * blocks):
            acc = T.decl_buffer((rows, lanes), dtype, scope="local")
            total = T.decl_buffer((1,), dtype, scope="local")
            for r in T.unroll(rows):
                for lane in T.vectorized(lanes):
                    acc[r, lane] = T.cast(zero, dtype)
            for io in range(body // lanes):
                for r in T.unroll(rows):
                    for lane in T.vectorized(lanes):
                        acc[r, lane] = acc[r, lane] + x[p // (k * blocks), io * lanes + lane] * T.cast(
                            w[idx[p // (k * blocks), p // blocks % k], p % blocks * rows + r, io * lanes + lane],
                            dtype)
            for r in range(rows):
                total[0] = T.cast(zero, dtype)
                for lane in range(lanes):
                    total[0] = total[0] + acc[r, lane]
                for i in range(hidden - body):
                    total[0] = total[0] + x[p // (k * blocks), body + i] * T.cast(
                        w[idx[p // (k * blocks), p // blocks % k], p % blocks * rows + r, body + i], dtype)
                h[p // (k * blocks), p // blocks % k, p % blocks * rows + r] = total[0]

    return kernel.with_attr("op_pattern", _OPAQUE)


def routed_out_kernel(experts: int, hidden: int, ffn: int, k: int, dtype: str, w_dtype: str) -> tirx.PrimFunc:
    """y [T, H] from h [T, k, F], idx [T, k], router weights [T, k] and W [E, H, F]."""
    lanes, rows, zero = LANES, _rows(hidden), 0.0
    blocks, body = hidden // rows, ffn - ffn % LANES

    @T.prim_func(private=True)
    def kernel(h_handle: T.handle, idx_handle: T.handle, w_handle: T.handle, rw_handle: T.handle,
               y_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        t = T.int64()
        h = T.match_buffer(h_handle, (t, k, ffn), dtype)
        idx = T.match_buffer(idx_handle, (t, k), "int64")
        w = T.match_buffer(w_handle, (experts, hidden, ffn), w_dtype)
        rw = T.match_buffer(rw_handle, (t, k), "float32")
        y = T.match_buffer(y_handle, (t, hidden), dtype)
        for p in T.parallel(t * blocks):
            acc = T.decl_buffer((rows, lanes), dtype, scope="local")
            out = T.decl_buffer((rows,), dtype, scope="local")
            total = T.decl_buffer((1,), dtype, scope="local")
            for r in range(rows):
                out[r] = T.cast(zero, dtype)
            for j in range(k):
                for r in T.unroll(rows):
                    for lane in T.vectorized(lanes):
                        acc[r, lane] = T.cast(zero, dtype)
                for fo in range(body // lanes):
                    for r in T.unroll(rows):
                        for lane in T.vectorized(lanes):
                            acc[r, lane] = acc[r, lane] + h[p // blocks, j, fo * lanes + lane] * T.cast(
                                w[idx[p // blocks, j], p % blocks * rows + r, fo * lanes + lane], dtype)
                for r in range(rows):
                    total[0] = T.cast(zero, dtype)
                    for lane in range(lanes):
                        total[0] = total[0] + acc[r, lane]
                    for i in range(ffn - body):
                        total[0] = total[0] + h[p // blocks, j, body + i] * T.cast(
                            w[idx[p // blocks, j], p % blocks * rows + r, body + i], dtype)
                    out[r] = out[r] + T.cast(rw[p // blocks, j], dtype) * total[0]
            for r in range(rows):
                y[p // blocks, p % blocks * rows + r] = out[r]

    return kernel.with_attr("op_pattern", _OPAQUE)
