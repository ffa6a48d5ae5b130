"""Lowerings of the mixture-of-experts router and experts.

CPU targets run the experts sparsely in the hand-written kernels of
`moe_kernels.py`: the router's (token, slot) pairs are grouped by expert and
each expert's weights multiply all of its tokens at once, so only the chosen
experts are computed and streamed, with no data-dependent shapes (one kernel
set serves prefill and decode).

GPU targets run them densely, every expert's MLP on every token weighted by
the token's routing weight for that expert (zero when it was not chosen), as
the batched reductions dlight can schedule: exact, but experts/top_k times the
routed FLOPs.
"""

from __future__ import annotations

import numpy as np
from tvm import relax, te

from irgraph.codegen.lowering import static_dim
from irgraph.codegen.tvm.linear import as_dtype
from irgraph.codegen.tvm.lower_basic import act
from irgraph.codegen.tvm.lowering import Context, array_const, lowers
from irgraph.codegen.tvm.moe_kernels import grouped_kernel
from irgraph.ir import Node

op = relax.op


@lowers("moe_router")
def _moe_router(ctx: Context, node: Node, x: relax.Expr, weight: relax.Expr) -> list[relax.Expr]:
    a = node.attrs
    experts = static_dim(node.arg(1).type.shape[0], node, "experts")
    lead = ctx.shape(node.arg(0).type)[:-1]
    logits = ctx.emit(op.matmul(x, op.permute_dims(weight)))  # (..., E)
    if logits.ty.dtype != "float32":
        logits = ctx.emit(op.astype(logits, "float32"))
    scores = ctx.emit(
        op.nn.softmax(logits, axis=-1) if a["scoring"] == "softmax" else op.sigmoid(logits)
    )
    choose = scores
    if a["n_group"] > 1:  # keep the experts of the topk_group groups with the best single expert
        g = a["n_group"]
        grouped = ctx.emit(op.reshape(scores, [*lead, g, experts // g]))
        best = ctx.emit(op.max(grouped, axis=[-1]))  # (..., G)
        kept = _topk(ctx, best, a["topk_group"])  # (..., topk_group)
        keep = ctx.emit(
            op.max(
                op.astype(
                    op.equal(op.expand_dims(kept, [-1]), array_const(np.arange(g, dtype=np.int64))),
                    "int32",
                ),
                axis=[-2],
            )
        )  # (..., G): 1 where the group is kept
        keep = ctx.emit(
            op.reshape(
                op.broadcast_to(op.expand_dims(keep, [-1]), [*lead, g, experts // g]),
                [*lead, experts],
            )
        )
        choose = ctx.emit(
            op.where(op.astype(keep, "bool"), scores, relax.const(-np.inf, "float32"))
        )
    indices = _topk(ctx, choose, a["top_k"])
    weights = ctx.emit(op.gather_elements(scores, indices, axis=-1))
    if a["normalize"]:
        weights = ctx.emit(op.divide(weights, op.sum(weights, axis=[-1], keepdims=True)))
    if a["scaling"] != 1.0:
        weights = ctx.emit(op.multiply(weights, relax.const(a["scaling"], "float32")))
    return [weights, indices]


@lowers("moe_fixed_router")
def _moe_fixed_router(
    ctx: Context, node: Node, ids: relax.Expr, domain: relax.Expr, table: relax.Expr
) -> list[relax.Expr]:
    """experts = table.flat[domain·vocab + ids] (one take), weight 1."""
    vocab = static_dim(node.arg(2).type.shape[1], node, "vocab")
    flat = ctx.emit(op.reshape(table, [-1]))
    at = ctx.emit(
        op.add(op.multiply(op.expand_dims(domain, [1]), relax.const(vocab, "int64")), ids)
    )
    indices = ctx.emit(op.expand_dims(op.take(flat, at, axis=0), [-1]))
    return [ctx.emit(op.astype(op.ones_like(indices), "float32")), indices]


def _topk(ctx: Context, scores: relax.Expr, k: int) -> relax.Var:
    """Indices (int64) of the k largest along the last axis, largest first, ties to the lower index.

    CPU targets take k argmaxes, each over what the previous ones left (the order of the
    reference's stable descending argsort): Relax's topk calls the runtime's contrib sort,
    which the aarch64 edge runtime does not ship. k is a router's top_k or topk_group.
    """
    if ctx.target == "cuda":
        return ctx.emit(op.topk(scores, k=k, axis=-1, ret_type="indices", dtype="int64"))
    n = int(scores.ty.shape[-1])
    positions = array_const(np.arange(n, dtype=np.int64))
    picks: list[relax.Expr] = []
    for j in range(k):
        if j:
            taken = ctx.emit(op.equal(op.expand_dims(picks[-1], [-1]), positions))
            scores = ctx.emit(op.where(taken, relax.const(-np.inf, "float32"), scores))
        picks.append(ctx.emit(op.argmax(scores, axis=-1)))
    return ctx.emit(op.stack(picks, axis=-1)) if k > 1 else ctx.emit(op.expand_dims(picks[0], [-1]))


def _expert_in(x: te.Tensor, w: te.Tensor) -> te.Tensor:
    """h[e, t, f] = Σ_i x[t, i] · w[e, f, i] (reduction innermost in both operands)."""
    r = te.reduce_axis((0, w.shape[2]), name="i")
    return te.compute(
        (w.shape[0], x.shape[0], w.shape[1]),
        lambda e, t, f: te.sum(x[t, r] * as_dtype(w[e, f, r], x.dtype), axis=r),
        name="expert_in",
    )


def _expert_out(h: te.Tensor, w: te.Tensor) -> te.Tensor:
    """y[e, t, o] = Σ_f h[e, t, f] · w[e, o, f]."""
    r = te.reduce_axis((0, w.shape[2]), name="f")
    return te.compute(
        (w.shape[0], h.shape[1], w.shape[1]),
        lambda e, t, o: te.sum(h[e, t, r] * as_dtype(w[e, o, r], h.dtype), axis=r),
        name="expert_out",
    )


def routed_fits(ctx: Context) -> bool:
    """Whether the experts run sparsely (CPU targets; dlight schedules only the dense form)."""
    return ctx.target != "cuda"


@lowers("moe_experts")
def _moe_experts(
    ctx: Context,
    node: Node,
    x: relax.Expr,
    weights: relax.Expr,
    indices: relax.Expr,
    w_up: relax.Expr,
    w_down: relax.Expr,
    w_gate: relax.Expr | None,
) -> list[relax.Expr]:
    xt = node.arg(0).type
    w_shape = node.arg(3).type.shape
    experts = static_dim(w_shape[0], node, "experts")
    hidden = static_dim(w_shape[2], node, "hidden")
    k = static_dim(node.arg(1).type.shape[-1], node, "top_k")
    tokens = ctx.dim(xt.shape[0])
    for d in xt.shape[1:-1]:
        tokens = tokens * ctx.dim(d)
    x2 = ctx.emit(op.reshape(x, [tokens, hidden]))
    w2 = ctx.emit(op.reshape(weights, [tokens, k]))
    i2 = ctx.emit(op.reshape(indices, [tokens, k]))
    if routed_fits(ctx):
        dtype, pairs = x.ty.dtype, tokens * k

        def project(a: relax.Expr, w: relax.Expr, per_pair: bool) -> relax.Var:  # (T·k, out)
            e, n, r = (int(d) for d in w.ty.shape)
            wd = w.ty.dtype
            kernel = ctx.kernel(
                f"moe_grouped_{'down' if per_pair else 'in'}_{e}x{n}x{r}_k{k}_{dtype}_{wd}",
                lambda: grouped_kernel(e, n, r, k, per_pair, dtype, wd),
            )
            return ctx.emit(
                relax.call_tir(kernel, [i2, a, w], out_ty=relax.TensorType([pairs, n], dtype))
            )

        up = project(x2, w_up, False)
        h = (
            ctx.emit(op.multiply(act(ctx, node.attrs["act"], project(x2, w_gate, False)), up))
            if w_gate is not None
            else ctx.emit(act(ctx, node.attrs["act"], up))
        )
        z = ctx.emit(op.reshape(project(h, w_down, True), [tokens, k, hidden]))
        mix = ctx.emit(
            op.expand_dims(w2 if w2.ty.dtype == dtype else op.astype(w2, dtype), [-1])
        )  # (T, k, 1)
        y = ctx.emit(op.sum(op.multiply(z, mix), axis=[1]))
        return [ctx.emit(op.reshape(y, ctx.shape(xt)))]
    onehot = ctx.emit(
        op.equal(op.expand_dims(i2, [-1]), array_const(np.arange(experts, dtype=np.int64)))
    )
    dense = ctx.emit(
        op.sum(op.multiply(op.astype(onehot, "float32"), op.expand_dims(w2, [-1])), axis=[1])
    )  # (T, E)
    up = ctx.bb.emit_te(_expert_in, x2, w_up, primfunc_name_hint="expert_up")  # (E, T, F)
    if w_gate is not None:
        gate = ctx.bb.emit_te(_expert_in, x2, w_gate, primfunc_name_hint="expert_gate")
        h = ctx.emit(op.multiply(act(ctx, node.attrs["act"], gate), up))
    else:
        h = ctx.emit(act(ctx, node.attrs["act"], up))
    y = ctx.bb.emit_te(_expert_out, h, w_down, primfunc_name_hint="expert_down")  # (E, T, H)
    mix = ctx.emit(op.expand_dims(op.permute_dims(dense, [1, 0]), [-1]))  # (E, T, 1)
    if mix.ty.dtype != y.ty.dtype:
        mix = ctx.emit(op.astype(mix, y.ty.dtype))
    out = ctx.emit(op.sum(op.multiply(y, mix), axis=[0]))  # (T, H)
    return [ctx.emit(op.reshape(out, ctx.shape(xt)))]
