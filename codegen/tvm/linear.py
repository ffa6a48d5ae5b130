"""Linear layers that run fast on CPUs: a packed weight layout and a hand-written TIR kernel.

Out of the box TVM lowers x·Wᵀ to a materialised transpose plus an unscheduled
matmul (~0.3 GB/s of weight bandwidth, docs/tvm.md §3). Here the
weight [N, K] is regrouped once, when the runtime loads it, into
[N/nb, K, nb]: for every k the kernel reads nb consecutive output rows'
weights (nb=32: two AVX-512 or eight NEON registers of fp32) with unit stride
and does broadcast-FMAs into register accumulators. Nothing is transposed per
call. The kernel:

    for no in parallel(N/nb):                  # a block of nb output features per task
      for mo in range(M // mt):                # full tiles of mt tokens (prefill)
        acc[mt, nb] = 0                        # mt·nb/lanes independent FMA chains
        for k in range(K):                     # reduction, contiguous weight reads
          acc[i, :] += x[mo*mt+i, k] * Wp[no, k, :]     for i < mt (unrolled, vector FMA)
        y[mo*mt : mo*mt+mt, no*nb : no*nb+nb] = acc
      if M % mt >= mt/2: one half tile of mt/2 tokens
      for r in range(M % mt % (mt/2)):         # the last few tokens, one at a time (decode: M = 1)
        ... the same with one row

Tiling tokens reuses each weight vector mt times from registers (prefill is
then bound by FMA throughput, ~100 GFLOP/s on one Zen 4 core, more than
numpy's BLAS); decode (M = 1) is bound by streaming the weights. mt is 8 on x86
(16 of the 32 AVX-512 registers accumulate: 8 rows x 2 vectors; measured ~5%
over mt 4 at M=128) and 2 on aarch64 (32 NEON registers, 8 per row at nb=32).
The half tile keeps a prompt of, say, 13 tokens from running 5 of them at the
one-row speed.

GPU targets use the plain layout and a TE reduction that dlight schedules.
"""

from __future__ import annotations

from functools import reduce

from tvm import relax, sym, te, tirx
from tvm.script import tirx as T

from irgraph.codegen.tvm import vnni_kernels
from irgraph.codegen.tvm.lowering import Context
from irgraph.codegen.tvm.quant_kernels import quantized_kernel
from irgraph.ir import Node

_OPAQUE = 8  # relax OpPatternKind.kOpaque: keep FuseOps from merging (and re-scheduling) the kernel


def packed_kernel(
    n: int, k: int, nb: int, dtype: str, w_dtype: str | None = None, mt: int = 8
) -> tirx.PrimFunc:
    """y[m, n] = Σ_k x[m, k] · Wp[n // nb, k, n % nb], as in the module docstring.

    A weight stored in another dtype (fp16/bf16/int8 under fp32 activations) is
    converted element by element inside the loop: the weight streams at its
    storage width, the arithmetic happens in `dtype`, as in the op's reference.
    `mt` (tokens per register tile) is even, or 1.
    """
    blocks, wdt, zero, half = n // nb, w_dtype or dtype, 0.0, max(mt // 2, 1)

    @T.prim_func(private=True)
    def kernel(x_handle: T.handle, w_handle: T.handle, y_handle: T.handle) -> None:
        T.func_attr({"tirx.noalias": True})
        m = T.int64()
        x = T.match_buffer(x_handle, (m, k), dtype)
        w = T.match_buffer(w_handle, (blocks, k, nb), wdt)
        y = T.match_buffer(y_handle, (m, n), dtype)
        for no in T.parallel(blocks):
            acc = T.decl_buffer((mt, nb), dtype, scope="local")
            row = T.decl_buffer((nb,), dtype, scope="local")
            for mo in range(m // mt):
                for i in T.unroll(mt):
                    for j in T.vectorized(nb):
                        acc[i, j] = T.cast(zero, dtype)
                for kk in range(k):
                    for i in T.unroll(mt):
                        for j in T.vectorized(nb):
                            acc[i, j] = acc[i, j] + x[mo * mt + i, kk] * T.cast(w[no, kk, j], dtype)
                for i in T.unroll(mt):
                    for j in T.vectorized(nb):
                        y[mo * mt + i, no * nb + j] = acc[i, j]
            if m % mt >= half:  # a half tile of the leftover tokens
                for i in T.unroll(half):
                    for j in T.vectorized(nb):
                        acc[i, j] = T.cast(zero, dtype)
                for kk in range(k):
                    for i in T.unroll(half):
                        for j in T.vectorized(nb):
                            acc[i, j] = acc[i, j] + x[m - m % mt + i, kk] * T.cast(
                                w[no, kk, j], dtype
                            )
                for i in T.unroll(half):
                    for j in T.vectorized(nb):
                        y[m - m % mt + i, no * nb + j] = acc[i, j]
            for r in range(m % mt % half):
                for j in T.vectorized(nb):
                    row[j] = T.cast(zero, dtype)
                for kk in range(k):
                    for j in T.vectorized(nb):
                        row[j] = row[j] + x[m - m % mt % half + r, kk] * T.cast(w[no, kk, j], dtype)
                for j in T.vectorized(nb):
                    y[m - m % mt % half + r, no * nb + j] = row[j]

    return kernel.with_attr("op_pattern", _OPAQUE)


def as_dtype(value: tirx.PrimExpr, dtype: str) -> tirx.PrimExpr:
    return value if value.dtype == dtype else value.astype(dtype)


def _plain(x: te.Tensor, w: te.Tensor) -> te.Tensor:
    """x [.., K] · w [N, K]ᵀ with the reduction axis innermost in both operands.

    The form dlight's GEMV/Matmul rules take as input.
    """
    r = te.reduce_axis((0, w.shape[1]), name="k")

    def rule(*i: tirx.Var) -> tirx.PrimExpr:
        row = (*i[:-1], r)  # x's index (.., k)
        return te.sum(x[row] * as_dtype(w[i[-1], r], x.dtype), axis=r)

    return te.compute((*x.shape[:-1], w.shape[0]), rule, name="linear")


def lower_linear(
    ctx: Context, node: Node, x: relax.Expr, weight: relax.Expr | None, bias: relax.Expr | None
) -> relax.Expr:
    out_type = node.outputs[0].type
    param = node.arg(1).param
    packed = ctx.weight_args.get(param) if param is not None else None
    quant = ctx.quant_args.get(param) if param is not None else None
    if quant is not None:
        y = _quantized(ctx, node, x, quant)
    elif packed is None:
        y = ctx.bb.emit_te(_plain, x, weight, primfunc_name_hint="linear")
    else:
        nb = int(packed.ty.shape[2])
        n, k = int(packed.ty.shape[0]) * nb, int(packed.ty.shape[1])
        dtype, w_dtype = x.ty.dtype, packed.ty.dtype
        mt = 2 if ctx.target == "aarch64" else 8
        key = f"linear_packed_{n}x{k}_{nb}_{dtype}_{w_dtype}"
        gvar = ctx.kernel(key, lambda: packed_kernel(n, k, nb, dtype, w_dtype, mt))
        lead = [ctx.dim(d) for d in node.arg(0).type.shape[:-1]]
        rows = sym.Analyzer().simplify(reduce(lambda a, b: a * b, lead, tirx.IntImm("int64", 1)))
        x2 = ctx.emit(relax.op.reshape(x, [rows, k]))  # (tokens, K)
        y2 = ctx.emit(relax.call_tir(gvar, [x2, packed], out_ty=relax.TensorType([rows, n], dtype)))
        y = ctx.emit(relax.op.reshape(y2, ctx.shape(out_type)))
    if bias is not None:
        if bias.ty.dtype != y.ty.dtype:
            bias = ctx.emit(relax.op.astype(bias, y.ty.dtype))
        y = ctx.emit(relax.op.add(y, bias))
    return y


def _quantized(ctx: Context, node: Node, x: relax.Expr, parts: list[relax.Expr]) -> relax.Expr:
    """x · dequantize(W)ᵀ on the packed stored parts (`quant_kernels`), fp32 activations."""
    t = node.arg(1).type
    assert t.quant is not None  # quant_args holds quantized params only
    n, k = (int(d) for d in t.shape)  # type: ignore[arg-type]  # params are static
    nb = int(parts[0].ty.shape[2])
    spec, dtype = t.quant, x.ty.dtype
    if dtype != "float32":
        x = ctx.emit(relax.op.astype(x, "float32"))
    lead = [ctx.dim(d) for d in node.arg(0).type.shape[:-1]]
    rows = sym.Analyzer().simplify(reduce(lambda a, b: a * b, lead, tirx.IntImm("int64", 1)))
    x2 = ctx.emit(relax.op.reshape(x, [rows, k]))
    out_ty = relax.TensorType([rows, n], "float32")
    if parts[0].ty.dtype == "int32":  # vnni16: int8 activations x int4 weights
        key = f"linear_vnni_{spec}_{n}x{k}"
        gvar = ctx.kernel(key, lambda: vnni_kernels.vnni_kernel(n, k, spec))
        y2 = ctx.emit(relax.call_tir(gvar, [x2, *parts], out_ty=out_ty))
    else:
        mt = 2 if ctx.target == "aarch64" else 4
        key = f"linear_{spec.storage}_{spec}_{n}x{k}_{nb}_{mt}"
        gvar = ctx.kernel(key, lambda: quantized_kernel(n, k, nb, spec, mt))
        y2 = ctx.emit(relax.call_tir(gvar, [x2, *parts], out_ty=out_ty))
    y = ctx.emit(relax.op.reshape(y2, ctx.shape(node.outputs[0].type)))
    return y if dtype == "float32" else ctx.emit(relax.op.astype(y, dtype))
