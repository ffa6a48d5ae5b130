"""CPU kernels for routed mixture-of-experts projections.

Hand-written in TIR like the linear kernel.

Only the chosen experts' weights are read. Each projection groups the router's
(token, slot) pairs p = t·k + j by expert (a counting sort), then walks every
expert's pairs:

  up / gate   z[p, f] = Σ_i x[p // k, i] · W[e, f, i]      for the pairs p of expert e
  down        z[p, o] = Σ_f h[p, f] · W[e, o, f]
  (the router-weighted sum over a token's k pairs is a Relax reduction after the down kernel)

Expert weights keep the IR's [experts, out, in] layout, contiguous along the
reduction. A task takes `span` blocks of `rows` output features and, for each
expert, its pairs mt at a time: mt x rows accumulators, each a `lanes`-wide
vector along the reduction, so every weight vector loaded serves mt tokens from
registers (prefill: 128 tokens of a Mixtral-like layer ~8x faster than one pair
at a time) and every token vector `rows` features; the last pairs of an expert
go one at a time (decode). Tasks split the output features, so one decoded
token still spreads over the thread pool, and each task streams `span`·`rows`
consecutive weight rows per expert.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

_OPAQUE = 8  # relax OpPatternKind.kOpaque: FuseOps leaves the kernel as written
LANES = 16


def _rows(n: int) -> int:
    return 4 if n % 4 == 0 else 2 if n % 2 == 0 else 1


def grouped_kernel(
    experts: int, n: int, r: int, k: int, per_pair: bool, dtype: str, w_dtype: str, mt: int = 4
) -> tirx.PrimFunc:
    """z [T·k, N] = a[row(p)] · W[idx(p)]ᵀ for every pair p, as in the module docstring.

    a is x [T, R] (row(p) = p // k: the up and gate projections) or, with
    `per_pair`, h [T·k, R] (row(p) = p: the down projection); W is [E, N, R];
    idx [T, k] is the router's choice. The kernel first groups the pairs by
    expert (a counting sort, stable: expert e's pairs are
    order[offsets[e] : offsets[e + 1]], in token order; microseconds next to the
    products), then runs the tiles.
    """
    lanes, rows, zero = LANES, _rows(n), 0.0
    blocks, body = n // rows, r - r % LANES
    div = 1 if per_pair else k
    span = next(
        s for s in (8, 4, 2, 1) if blocks % s == 0
    )  # row blocks per task: longer weight streams

    @T.prim_func(private=True)
    def kernel(
        idx_handle: T.handle, a_handle: T.handle, w_handle: T.handle, z_handle: T.handle
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        t = T.int64()
        idx = T.match_buffer(idx_handle, (t, k), "int64")
        a = T.match_buffer(a_handle, (t * (k // div), r), dtype)
        w = T.match_buffer(w_handle, (experts, n, r), w_dtype)
        z = T.match_buffer(z_handle, (t * k, n), dtype)
        offsets = T.decl_buffer((experts + 1,), "int64")
        order = T.decl_buffer((t * k,), "int64")
        cursor = T.decl_buffer((experts,), "int64")
        for e in range(experts + 1):
            offsets[e] = T.int64(0)
        for p in range(t * k):
            offsets[idx[p // k, p % k] + 1] = offsets[idx[p // k, p % k] + 1] + T.int64(1)
        for e in range(experts):
            offsets[e + 1] = offsets[e + 1] + offsets[e]
            cursor[e] = offsets[e]
        for p in range(t * k):
            order[cursor[idx[p // k, p % k]]] = p
            cursor[idx[p // k, p % k]] = cursor[idx[p // k, p % k]] + T.int64(1)
        for task in T.parallel(blocks // span):
            acc = T.decl_buffer((mt, rows, lanes), dtype, scope="local")
            total = T.decl_buffer((1,), dtype, scope="local")
            src = T.decl_buffer((mt,), "int64", scope="local")
            for e, g in T.grid(experts, span):
                f0 = (task * span + g) * rows
                start = offsets[e]
                count = offsets[e + 1] - offsets[e]
                for tile in range(count // mt):
                    for i in T.unroll(mt):
                        src[i] = order[start + tile * mt + i] // div
                        for q in T.unroll(rows):
                            for lane in T.vectorized(lanes):
                                acc[i, q, lane] = T.cast(zero, dtype)
                    for io in range(body // lanes):
                        for i in T.unroll(mt):
                            for q in T.unroll(rows):
                                for lane in T.vectorized(lanes):
                                    acc[i, q, lane] = acc[i, q, lane] + a[
                                        src[i], io * lanes + lane
                                    ] * T.cast(w[e, f0 + q, io * lanes + lane], dtype)
                    for i in range(mt):
                        for q in range(rows):
                            total[0] = T.cast(zero, dtype)
                            for lane in range(lanes):
                                total[0] = total[0] + acc[i, q, lane]
                            for j in range(r - body):
                                total[0] = total[0] + a[src[i], body + j] * T.cast(
                                    w[e, f0 + q, body + j], dtype
                                )
                            z[order[start + tile * mt + i], f0 + q] = total[0]
                for rest in range(count % mt):
                    src[0] = order[start + count // mt * mt + rest] // div
                    for q in T.unroll(rows):
                        for lane in T.vectorized(lanes):
                            acc[0, q, lane] = T.cast(zero, dtype)
                    for io in range(body // lanes):
                        for q in T.unroll(rows):
                            for lane in T.vectorized(lanes):
                                acc[0, q, lane] = acc[0, q, lane] + a[
                                    src[0], io * lanes + lane
                                ] * T.cast(w[e, f0 + q, io * lanes + lane], dtype)
                    for q in range(rows):
                        total[0] = T.cast(zero, dtype)
                        for lane in range(lanes):
                            total[0] = total[0] + acc[0, q, lane]
                        for j in range(r - body):
                            total[0] = total[0] + a[src[0], body + j] * T.cast(
                                w[e, f0 + q, body + j], dtype
                            )
                        z[order[start + count // mt * mt + rest], f0 + q] = total[0]

    return kernel.with_attr("op_pattern", _OPAQUE)
