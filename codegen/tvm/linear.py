"""Linear layers that run fast on CPUs: a packed weight layout and a hand-scheduled kernel.

Out of the box TVM lowers x·Wᵀ to a materialised transpose plus an unscheduled
matmul (~0.3 GB/s of weight bandwidth, ../shared/notes/tvm.md §6). Here the
weight [N, K] is regrouped once, when the runtime loads it, into
[N/nb, K, nb]: for every k the kernel reads nb consecutive output rows'
weights (nb=32: two AVX-512 or eight NEON registers of fp32) and does
broadcast-FMAs into register accumulators of nb outputs (two independent
chains, which measured ~1.5x faster than nb=16 here for decode and prefill). The k loop thus
streams the weight with unit stride, blocks of output rows run in parallel,
and nothing is transposed per call. The schedule:

    for no in parallel(N/nb):          # a block of nb output features per task
      for m in range(M):               # tokens (1 when decoding)
        acc[0:nb] = 0
        for k in range(K):             # reduction, contiguous weight reads
          acc[0:nb] += x[m, k] * Wp[no, k, 0:nb]   # unrolled -> one vector FMA
        y[m, no*nb : no*nb+nb] = acc

GPU targets use the plain layout and a TE reduction that dlight schedules.
"""

from __future__ import annotations

from functools import reduce

from tvm import relax, s_tir, sym, te, tirx

from irgraph.codegen.tvm.lowering import Context
from irgraph.ir import Node

_OPAQUE = 8  # relax OpPatternKind.kOpaque: keep FuseOps from merging (and re-scheduling) the kernel


def packed_kernel(n: int, k: int, nb: int, dtype: str, w_dtype: str | None = None) -> tirx.PrimFunc:
    """y[m, n] = Σ_k x[m, k] · Wp[n // nb, k, n % nb], scheduled as in the module docstring.

    A weight stored in another dtype (fp16/bf16/int8 under fp32 activations) is
    converted element by element inside the loop: the weight streams at its
    storage width, the arithmetic happens in `dtype`, as in the op's reference.
    """
    m = tirx.Var("m", "int64")
    x = te.placeholder((m, k), dtype, name="x")
    w = te.placeholder((n // nb, k, nb), w_dtype or dtype, name="w")
    r = te.reduce_axis((0, k), name="k")
    y = te.compute((m, n), lambda i, j: te.sum(x[i, r] * as_dtype(w[j // nb, r, j % nb], dtype), axis=r), name="y")
    sch = s_tir.Schedule(te.create_prim_func([x, w, y]))
    block = sch.get_sblock("y")
    loop_m, loop_n, loop_k = sch.get_loops(block)
    outer, inner = sch.split(loop_n, [None, nb])
    sch.reorder(outer, loop_m, loop_k, inner)
    sch.parallel(outer)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, loop_m)
    init = sch.decompose_reduction(block, loop_k)
    sch.unroll(sch.get_loops(block)[-1])  # LLVM's SLP vectoriser turns the nb FMAs into vector FMAs
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(acc)[-1])
    return sch.mod["main"].with_attr("op_pattern", _OPAQUE)


def as_dtype(value: tirx.PrimExpr, dtype: str) -> tirx.PrimExpr:
    return value if value.dtype == dtype else value.astype(dtype)


def _plain(x: te.Tensor, w: te.Tensor) -> te.Tensor:
    """x [.., K] · w [N, K]ᵀ with the reduction axis innermost in both operands (dlight's GEMV/Matmul input)."""
    r = te.reduce_axis((0, w.shape[1]), name="k")
    return te.compute((*x.shape[:-1], w.shape[0]),
                      lambda *i: te.sum(x[(*i[:-1], r)] * as_dtype(w[i[-1], r], x.dtype), axis=r), name="linear")


def lower_linear(ctx: Context, node: Node, x: relax.Expr, weight: relax.Expr | None,
                 bias: relax.Expr | None) -> relax.Expr:
    out_type = node.outputs[0].type
    param = node.inputs[1].param
    packed = ctx.weight_args.get(param) if param is not None else None
    if packed is None:
        y = ctx.bb.emit_te(_plain, x, weight, primfunc_name_hint="linear")
    else:
        nb = int(packed.ty.shape[2])
        n, k = int(packed.ty.shape[0]) * nb, int(packed.ty.shape[1])
        dtype, w_dtype = x.ty.dtype, packed.ty.dtype
        key = f"linear_packed_{n}x{k}_{nb}_{dtype}_{w_dtype}"
        gvar = ctx.kernels.get(key)
        if gvar is None:
            kernel = packed_kernel(n, k, nb, dtype, w_dtype).with_attr("global_symbol", key)
            gvar = ctx.kernels[key] = ctx.bb.add_func(kernel, key)
        lead = [ctx.dim(d) for d in node.inputs[0].type.shape[:-1]]
        rows = sym.Analyzer().simplify(reduce(lambda a, b: a * b, lead, tirx.IntImm("int64", 1)))
        x2 = ctx.emit(relax.op.reshape(x, [rows, k]))  # (tokens, K)
        y2 = ctx.emit(relax.call_tir(gvar, [x2, packed], out_ty=relax.TensorType([rows, n], dtype)))
        y = ctx.emit(relax.op.reshape(y2, ctx.shape(out_type)))
    if bias is not None:
        if bias.ty.dtype != y.ty.dtype:
            bias = ctx.emit(relax.op.astype(bias, y.ty.dtype))
        y = ctx.emit(relax.op.add(y, bias))
    return y
