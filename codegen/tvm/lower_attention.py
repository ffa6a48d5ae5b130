"""Lowerings of rotary, attention (with its KV cache and masks), ALiBi and T5 bias (MLA arrives
absorbed into attention: codegen/lowering.py `legalize`).

Attention follows the op's reference (`irgraph/ops/attention.py`) step by
step: present = concat(past, new) along the sequence, grouped query heads read
their shared KV head in place, masks are built in one TE kernel from the rules
in the op's docstring, and a query with no visible key gives zeros. Masked
scores use a large finite negative instead of -inf, so a fully masked row stays
finite before it is zeroed. On CPUs the two products run in the hand-written
kernels of `attention_kernels.py`, with one masked-softmax kernel between them
(mask, softmax and the no-visible-key zeroing in one pass over the scores); on
GPUs they stay Relax ops for dlight.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tvm import relax, te, tirx

from irgraph.codegen.lowering import static_dim
from irgraph.codegen.tvm.attention_kernels import scores_kernel, softmax_kernel, weighted_sum_kernel
from irgraph.codegen.tvm.lowering import Context, array_const, lowers, tvm_dtype
from irgraph.dtypes import DType
from irgraph.ir import Node
from irgraph.ops.attention import alibi_slopes, t5_buckets, xl_inv_frequencies
from irgraph.ops.kv_quant import FLOOR, QMAX, reduce_axes
from irgraph.ops.rotary import inv_frequencies, rotary_attention_factor

op = relax.op
_MASKED = -1e30


def _slice(
    ctx: Context,
    x: relax.Expr,
    axis: int,
    begin: int | tirx.PrimExpr,
    end: int | tirx.PrimExpr,
    step: int = 1,
) -> relax.Var:
    return ctx.emit(op.strided_slice(x, [axis], [begin], [end], [step], assume_inbound=True))


# -- rotary ------------------------------------------------------------------------------------


def _inv_freq(ctx: Context, pos: relax.Expr, rd: int, a: dict[str, Any]) -> relax.Expr:
    """Inverse frequencies [rd/2] f32.

    Dynamic NTK rescales the base from max(position_ids) at run time.
    """
    common = dict(
        rotary_dim=rd,
        base=a["base"],
        scaling=a["scaling"],
        factor=a["factor"],
        original_max_position=a["original_max_position"],
        low_freq_factor=a["low_freq_factor"],
        high_freq_factor=a["high_freq_factor"],
        beta_fast=a["beta_fast"],
        beta_slow=a["beta_slow"],
    )
    if a["scaling"] != "dynamic_ntk":
        return array_const(inv_frequencies(**common).astype(np.float32))
    # Same float64 formula as inv_frequencies, evaluated in the graph.
    f64 = "float64"
    base, factor, orig = a["base"], a["factor"], a["original_max_position"]
    longest = ctx.emit(op.add(op.astype(op.max(pos), f64), relax.const(1.0, f64)))
    grown = op.multiply(
        relax.const(base, f64),
        op.power(
            op.subtract(
                op.multiply(relax.const(factor / orig, f64), longest), relax.const(factor - 1, f64)
            ),
            relax.const(rd / (rd - 2), f64),
        ),
    )
    eff_base = ctx.emit(
        op.where(
            op.greater(longest, relax.const(float(orig), f64)), grown, relax.const(float(base), f64)
        )
    )
    exps = array_const(np.arange(0, rd, 2, dtype=np.float64) / rd)
    inv = op.divide(relax.const(1.0, f64), op.power(eff_base, exps))
    return ctx.emit(op.astype(inv, "float32"))


@lowers("rotary")
def _rotary(ctx: Context, node: Node, x: relax.Expr, pos: relax.Expr) -> list[relax.Expr]:
    a = dict(node.attrs)
    d = static_dim(node.arg(0).type.shape[3], node, "head_dim")
    rd = a["rotary_dim"] or d
    inv = _inv_freq(ctx, pos, rd, a)
    angles = ctx.emit(
        op.multiply(op.expand_dims(op.astype(pos, "float32"), [-1]), inv)
    )  # (B, S, rd/2)
    factor = rotary_attention_factor(
        a["scaling"], a["factor"], a["mscale"], a["mscale_all_dim"], a["attention_factor"]
    )
    f = array_const(np.float32(factor))
    cos = ctx.emit(op.expand_dims(op.multiply(op.cos(angles), f), [2]))  # (B, S, 1, rd/2)
    sin = ctx.emit(op.expand_dims(op.multiply(op.sin(angles), f), [2]))
    if x.ty.dtype != "float32":
        cos, sin = ctx.emit(op.astype(cos, x.ty.dtype)), ctx.emit(op.astype(sin, x.ty.dtype))
    if ctx.target != "cuda":
        return [
            ctx.bb.emit_te(_rotate, x, cos, sin, rd, a["interleaved"], primfunc_name_hint="rotary")
        ]
    rot = x if rd == d else _slice(ctx, x, 3, 0, rd)
    if a["interleaved"]:
        x1, x2 = _slice(ctx, rot, 3, 0, rd, 2), _slice(ctx, rot, 3, 1, rd, 2)
    else:
        x1, x2 = _slice(ctx, rot, 3, 0, rd // 2), _slice(ctx, rot, 3, rd // 2, rd)
    o1 = ctx.emit(op.subtract(op.multiply(x1, cos), op.multiply(x2, sin)))
    o2 = ctx.emit(op.add(op.multiply(x2, cos), op.multiply(x1, sin)))
    if a["interleaved"]:
        out = ctx.emit(
            op.reshape(op.stack([o1, o2], axis=4), ctx.shape(node.arg(0).type)[:3] + [rd])
        )
    else:
        out = ctx.emit(op.concat([o1, o2], axis=3))
    if rd < d:
        out = ctx.emit(op.concat([out, _slice(ctx, x, 3, rd, d)], axis=3))
    return [out]


def _rotate(x: te.Tensor, cos: te.Tensor, sin: te.Tensor, rd: int, interleaved: bool) -> te.Tensor:
    """apply_rotary of the op's reference as one elementwise kernel.

    x [B, S, H, D], cos/sin [B, S, 1, rd/2].

    The Relax form (slices, four products, two sums, concats) ran as ~8 kernels and
    ~4 ns per element on CPUs; here each output reads its pair partner directly.
    """
    half = rd // 2

    def rule(b: tirx.Var, s: tirx.Var, h: tirx.Var, d: tirx.Var) -> tirx.PrimExpr:
        if interleaved:
            i, first = (
                tirx.min(d // 2, half - 1),
                d % 2 == 0,
            )  # min: d >= rd reads no cos/sin it keeps
            x1, x2 = x[b, s, h, d - d % 2], x[b, s, h, d - d % 2 + 1]
        else:
            i, first = d % half, d < half
            x1, x2 = x[b, s, h, i], x[b, s, h, i + half]
        c, sn = cos[b, s, 0, i], sin[b, s, 0, i]
        rotated = tirx.Select(first, x1 * c - x2 * sn, x2 * c + x1 * sn)
        return rotated if rd == int(x.shape[3]) else tirx.Select(d < rd, rotated, x[b, s, h, d])

    return te.compute(x.shape, rule, name="rotary")


# -- attention ---------------------------------------------------------------------------------


def _visible(
    ctx: Context,
    shape: list[tirx.PrimExpr],
    key_mask: relax.Expr | None,
    prefix_len: relax.Expr | None,
    causal: bool,
    window: int,
    stride: int = 0,
) -> relax.Expr | None:
    """Boolean [batch, 1, seq, total] of the keys each query may see; None when all are visible."""
    if not (causal or window or stride or key_mask is not None):
        return None
    batch, sq, total = shape
    names = [n for n, v in (("key_mask", key_mask), ("prefix_len", prefix_len)) if v is not None]
    given = [v for v in (key_mask, prefix_len) if v is not None]

    def compute(*tensors: te.Tensor) -> te.Tensor:
        t = dict(zip(names, tensors))

        def rule(b: tirx.Var, _: tirx.Var, i: tirx.Var, j: tirx.Var) -> tirx.PrimExpr:
            past = total - sq
            ok = tirx.const(True, "bool")
            if causal:
                c = j <= past + i
                if "prefix_len" in t:
                    c = tirx.Or(c, j < t["prefix_len"][b].astype("int64"))
                ok = tirx.And(ok, c)
            if window:
                ok = tirx.And(ok, past + i - j < window)
            if stride:
                ok = tirx.And(ok, tirx.floormod(past + i - j, stride) == 0)
            if "key_mask" in t:
                ok = tirx.And(ok, t["key_mask"][b, j] != tirx.const(0, t["key_mask"].dtype))
            return ok

        return te.compute((batch, 1, sq, total), rule, name="visible")

    return ctx.bb.emit_te(compute, *given, primfunc_name_hint="attention_mask")


def sdpa(
    ctx: Context,
    q: relax.Expr,
    k: relax.Expr,
    v: relax.Expr,
    shape: list[tirx.PrimExpr],
    *,
    key_mask: relax.Expr | None = None,
    bias: relax.Expr | None = None,
    prefix_len: relax.Expr | None = None,
    causal: bool = True,
    window: int = 0,
    scale: float,
    softcap: float = 0.0,
    stride: int = 0,
    allowed: relax.Expr | None = None,
) -> relax.Var:
    """Attention over BNSH q [B,Hq,Sq,D], k [B,Hkv,T,D], v [B,Hkv,T,Dv] -> [B,Hq,Sq,Dv].

    `allowed` (bool [B, 1, Sq, T]) replaces the masks built from the other arguments.

    Grouped-query attention never copies K/V per query head: query head h uses KV head
    h // group, so q viewed as [B, Hkv, group·Sq, D] multiplies the cache directly.
    """
    hq, hkv = int(q.ty.shape[1]), int(k.ty.shape[1])
    group = hq // hkv
    batch, sq, total = shape
    dv = int(v.ty.shape[3])
    dtype = q.ty.dtype
    rows = group * sq
    if group > 1:
        q = ctx.emit(op.reshape(q, [batch, hkv, rows, int(q.ty.shape[3])]))  # (B, Hkv, group·Sq, D)
    if ctx.target == "cuda":
        scores = ctx.emit(
            op.multiply(op.matmul(q, op.permute_dims(k, [0, 1, 3, 2])), relax.const(scale, dtype))
        )
    else:
        kernel = ctx.kernel(
            f"attention_scores_{hkv}x{int(k.ty.shape[3])}_{dtype}_{scale!r}",
            lambda: scores_kernel(hkv, int(k.ty.shape[3]), scale, dtype),
        )
        scores = ctx.emit(
            relax.call_tir(
                kernel, [q, k], out_ty=relax.TensorType([batch, hkv, rows, total], dtype)
            )
        )
    if group > 1:
        scores = ctx.emit(op.reshape(scores, [batch, hq, sq, total]))  # (B, Hq, Sq, T)
    if softcap:
        cap = relax.const(softcap, dtype)
        scores = ctx.emit(op.multiply(cap, op.tanh(op.divide(scores, cap))))
    if bias is not None:
        scores = ctx.emit(
            op.add(scores, op.astype(bias, dtype) if bias.ty.dtype != dtype else bias)
        )
    if allowed is None:
        allowed = _visible(ctx, shape, key_mask, prefix_len, causal, window, stride)
    if ctx.target != "cuda":
        if allowed is None:
            allowed = ctx.emit(op.full([batch, 1, sq, total], relax.const(True, "bool"), "bool"))
        kernel = ctx.kernel(f"attention_softmax_{hq}_{dtype}", lambda: softmax_kernel(hq, dtype))
        probs = ctx.emit(relax.call_tir(kernel, [scores, allowed], out_ty=scores.ty))
    elif allowed is None:
        probs = ctx.emit(op.nn.softmax(scores, axis=-1))
    else:
        scores = ctx.emit(op.where(allowed, scores, relax.const(_MASKED, dtype)))
        any_visible = ctx.emit(
            op.astype(op.max(op.astype(allowed, "int32"), axis=[-1], keepdims=True), dtype)
        )
        probs = ctx.emit(op.multiply(op.nn.softmax(scores, axis=-1), any_visible))
    if group > 1:
        probs = ctx.emit(op.reshape(probs, [batch, hkv, rows, total]))
    if ctx.target == "cuda":
        out = ctx.emit(op.matmul(probs, v))  # (B, Hkv, group·Sq, Dv)
    else:
        kernel = ctx.kernel(
            f"attention_weighted_sum_{hkv}x{dv}_{dtype}",
            lambda: weighted_sum_kernel(hkv, dv, dtype),
        )
        out = ctx.emit(
            relax.call_tir(
                kernel, [probs, v], out_ty=relax.TensorType([batch, hkv, rows, dv], dtype)
            )
        )
    return out if group == 1 else ctx.emit(op.reshape(out, [batch, hq, sq, dv]))


@lowers("attention")
def _attention(
    ctx: Context,
    node: Node,
    q: relax.Expr,
    k: relax.Expr,
    v: relax.Expr,
    past_key: relax.Expr | None,
    past_value: relax.Expr | None,
    key_mask: relax.Expr | None,
    bias: relax.Expr | None,
    prefix_len: relax.Expr | None,
) -> list[relax.Expr]:
    a = node.attrs
    k_new = ctx.emit(op.permute_dims(k, [0, 2, 1, 3]))  # (B, Hkv, Sk, D)
    v_new = ctx.emit(op.permute_dims(v, [0, 2, 1, 3]))
    if past_key is not None:
        k_all = ctx.emit(op.concat([past_key, k_new], axis=2))  # (B, Hkv, past+Sk, D)
        v_all = ctx.emit(op.concat([past_value, v_new], axis=2))
    else:
        k_all, v_all = k_new, v_new
    qt = node.arg(0).type
    d = static_dim(qt.shape[3], node, "head_dim")
    shape = [ctx.dim(qt.shape[0]), ctx.dim(qt.shape[1]), ctx.dim(node.outputs[1].type.shape[2])]
    scale = 1.0 / math.sqrt(d) if a["scale"] is None else a["scale"]
    out = sdpa(
        ctx,
        ctx.emit(op.permute_dims(q, [0, 2, 1, 3])),
        k_all,
        v_all,
        shape,
        key_mask=key_mask,
        bias=bias,
        prefix_len=prefix_len,
        causal=a["causal"],
        window=a["window"],
        scale=scale,
        softcap=a["softcap"],
        stride=a["stride"],
    )
    return [ctx.emit(op.permute_dims(out, [0, 2, 1, 3])), k_all, v_all]


@lowers("alibi")
def _alibi(ctx: Context, node: Node, key_mask: relax.Expr | None) -> list[relax.Expr]:
    h = node.attrs["num_heads"]
    mask = ctx.emit(op.astype(key_mask, "float32"))
    positions = ctx.emit(
        op.multiply(op.subtract(op.cumsum(mask, axis=1), relax.const(1.0)), mask)
    )  # (B, T)
    slopes = array_const(alibi_slopes(h).reshape(1, h, 1, 1))
    return [ctx.emit(op.multiply(slopes, op.expand_dims(positions, [1, 2])))]  # (B, H, 1, T)


@lowers("relative_position_bias")
def _relative_position_bias(
    ctx: Context, node: Node, x: relax.Expr, key_mask: relax.Expr | None, table: relax.Expr
) -> list[relax.Expr]:
    """Buckets from a lookup table the reference itself fills.

    Beyond ±max_distance they saturate.
    """
    a = node.attrs
    buckets, heads = (static_dim(d, node, "bias table dim") for d in node.arg(2).type.shape)
    far = a["max_distance"]
    with np.errstate(
        invalid="ignore"
    ):  # log(0) at distance 0 is masked out by the reference itself
        lut = t5_buckets(np.arange(-far, far + 1, dtype=np.int64), a["bidirectional"], buckets, far)
    batch, sq, total = (ctx.dim(node.outputs[0].type.shape[i]) for i in (0, 2, 3))

    def compute(lut_t: te.Tensor) -> te.Tensor:
        def bucket(i: tirx.Var, j: tirx.Var) -> tirx.PrimExpr:
            rel = j - (total - sq + i)
            return lut_t[tirx.max(tirx.min(rel, far), -far) + far]

        return te.compute((sq, total), bucket, name="bucket")

    index = ctx.bb.emit_te(compute, array_const(lut), primfunc_name_hint="t5_buckets")  # (Sq, T)
    bias = ctx.emit(
        op.permute_dims(op.take(table, index, axis=0, mode="wrap"), [2, 0, 1])
    )  # (H, Sq, T)
    if bias.ty.dtype != "float32":
        bias = ctx.emit(op.astype(bias, "float32"))
    return [ctx.emit(op.broadcast_to(op.expand_dims(bias, [0]), [batch, heads, sq, total]))]


@lowers("xl_relative_bias")
def _xl_relative_bias(
    ctx: Context, node: Node, q: relax.Expr, key_mask: relax.Expr | None, weight: relax.Expr
) -> list[relax.Expr]:
    """One projected sinusoid per distance (past+2·seq-1 rows), then a gather per (i, j)."""
    qt = node.arg(0).type
    heads = static_dim(qt.shape[2], node, "heads")
    head_dim = static_dim(qt.shape[3], node, "head_dim")
    width = static_dim(node.arg(2).type.shape[1], node, "sinusoid width")
    half, scale = width // 2, float(node.attrs["scale"])
    batch, sq = ctx.dim(qt.shape[0]), ctx.dim(qt.shape[1])
    total = ctx.dim(node.outputs[0].type.shape[3])
    rows = total + sq - 1

    def sinusoid(freqs: te.Tensor) -> te.Tensor:  # (L, W): row l is distance total-1-l
        def rule(row: tirx.Var, c: tirx.Var) -> tirx.PrimExpr:
            angle = (total - 1 - row).astype("float32") * freqs[tirx.floormod(c, half)]
            return tirx.Select(c < half, tirx.sin(angle), tirx.cos(angle))

        return te.compute((rows, width), rule, name="xl_sinusoid")

    table = ctx.bb.emit_te(
        sinusoid,
        array_const(xl_inv_frequencies(width).astype(np.float32)),
        primfunc_name_hint="xl_sinusoid",
    )
    w = weight if weight.ty.dtype == "float32" else ctx.emit(op.astype(weight, "float32"))
    r = ctx.emit(op.matmul(table, op.permute_dims(w, [1, 0])))  # (L, H·D)
    if q.ty.dtype != "float32":
        q = ctx.emit(op.astype(q, "float32"))

    def bias(qt: te.Tensor, rt: te.Tensor) -> te.Tensor:
        # query i, key j: distance past+i-j sits in row s-1-i+j; no reshape of the symbolic L
        d = te.reduce_axis((0, head_dim), name="d")
        return te.compute(
            (batch, heads, sq, total),
            lambda b, h, i, j: te.sum(
                qt[b, i, h, d]
                * rt[sq - 1 - i + j, h * head_dim + d]
                * tirx.const(scale, "float32"),
                d,
            ),
            name="xl_bias",
        )

    return [ctx.bb.emit_te(bias, q, r, primfunc_name_hint="xl_bias")]


@lowers("kv_quantize")
def _kv_quantize(
    ctx: Context, node: Node, x: relax.Expr, scale: relax.Expr | None
) -> list[relax.Expr]:
    """New keys/values for a quantized cache (irgraph/ops/kv_quant.py). relax `round` is
    round-half-to-even (llvm nearbyint), as the reference's np.rint; the cast to float8 rounds
    to nearest even, as ml_dtypes does, after the clip to ±448 the reference applies."""
    dtype, granularity = node.attrs["dtype"], node.attrs["granularity"]
    xt = ctx.emit(op.permute_dims(x, [0, 2, 1, 3]))
    dt = xt.ty.dtype
    if scale is None:
        amax = ctx.emit(op.max(op.abs(xt), axis=list(reduce_axes(granularity)), keepdims=True))
        ratio = op.divide(amax, relax.const(QMAX[dtype], dt))
        scale = ctx.emit(op.maximum(ratio, relax.const(float(FLOOR), dt)))
    scaled = op.divide(xt, scale)
    if dtype == "i8":
        return [ctx.emit(op.astype(op.clip(op.round(scaled), -127.0, 127.0), "int8")), scale]
    limit = QMAX[dtype]
    return [ctx.emit(op.astype(op.clip(scaled, -limit, limit), tvm_dtype(DType(dtype)))), scale]


def _attend(
    ctx: Context,
    node: Node,
    q: relax.Expr,
    keys: relax.Expr,
    values: relax.Expr,
    total: tirx.PrimExpr,
    allowed: relax.Expr,
) -> relax.Expr:
    """Output 0 of a cached-attention op whose keys come as BNSH [B, Hkv, T, D] and whose
    visibility is `allowed` [B, 1, S, T]: sdpa, then back to [B, S, Hq, Dv]."""
    qt = node.arg(0).type
    d = static_dim(qt.shape[3], node, "head_dim")
    scale = node.attrs["scale"]
    out = sdpa(
        ctx,
        ctx.emit(op.permute_dims(q, [0, 2, 1, 3])),
        keys,
        values,
        [ctx.dim(qt.shape[0]), ctx.dim(qt.shape[1]), total],
        scale=1.0 / math.sqrt(d) if scale is None else scale,
        softcap=node.attrs["softcap"],
        allowed=allowed,
    )
    return ctx.emit(op.permute_dims(out, [0, 2, 1, 3]))


@lowers("ring_attention")
def _ring_attention(
    ctx: Context,
    node: Node,
    q: relax.Expr,
    k: relax.Expr,
    v: relax.Expr,
    past_key: relax.Expr,
    past_value: relax.Expr,
    key_mask: relax.Expr,
) -> list[relax.Expr]:
    """irgraph/ops/ring_attention.py: visibility by key position and the new ring's sources,
    both computed in TE from the mask's width; attention through the shared kernels."""
    w = tirx.IntImm("int64", node.attrs["window"])

    def key_position(past: tirx.PrimExpr, j: tirx.PrimExpr) -> tirx.PrimExpr:
        slot = past - 1 - tirx.floormod(past - 1 - j, w)
        return tirx.if_then_else(j < w, slot, past + j - w)

    def visible(mask: te.Tensor, query: te.Tensor) -> te.Tensor:
        total, seq = mask.shape[1], query.shape[1]  # the sizes the kernel is called with

        def rule(b: tirx.Var, _: tirx.Var, i: tirx.Var, j: tirx.Var) -> tirx.PrimExpr:
            past = total - seq
            p, at = key_position(past, j), past + i
            seen = mask[b, tirx.max(p, tirx.IntImm("int64", 0))] != tirx.const(0, mask.dtype)
            return tirx.all(p >= 0, p <= at, at - p < w, seen)

        return te.compute((mask.shape[0], 1, seq, w + seq), rule, name="ring_visible")

    def sources(mask: te.Tensor, query: te.Tensor) -> te.Tensor:
        total, seq = mask.shape[1], query.shape[1]

        def source(j: tirx.Var) -> tirx.PrimExpr:
            first = tirx.floormod(j - (total - seq), w)
            last = first + w * tirx.floordiv(seq - 1 - first, w)
            return tirx.if_then_else(first < seq, w + last, j)

        return te.compute((w,), source, name="ring_sources")

    allowed = ctx.bb.emit_te(visible, key_mask, q, primfunc_name_hint="ring_mask")
    index = ctx.bb.emit_te(sources, key_mask, q, primfunc_name_hint="ring_sources")
    k_all = ctx.emit(op.concat([past_key, op.permute_dims(k, [0, 2, 1, 3])], axis=2))
    v_all = ctx.emit(op.concat([past_value, op.permute_dims(v, [0, 2, 1, 3])], axis=2))
    return [
        _attend(ctx, node, q, k_all, v_all, w + ctx.dim(node.arg(0).type.shape[1]), allowed),
        ctx.emit(op.take(k_all, index, axis=2, mode="clip")),
        ctx.emit(op.take(v_all, index, axis=2, mode="clip")),
    ]


@lowers("paged_attention")
def _paged_attention(
    ctx: Context,
    node: Node,
    q: relax.Expr,
    k: relax.Expr,
    v: relax.Expr,
    key_pages: relax.Expr,
    value_pages: relax.Expr,
    block_table: relax.Expr,
    cache_lens: relax.Expr,
) -> list[relax.Expr]:
    """irgraph/ops/paged_attention.py: each new token's row in the pool (a token table of
    pages·block rows) computed in TE, scatter_nd writes them, take reads each row's pages in
    table order, and the causal rule masks by each row's length."""
    qt, kt, vt = (node.arg(i).type for i in range(3))
    d, dv = static_dim(qt.shape[3], node, "head_dim"), static_dim(vt.shape[3], node, "v head_dim")
    hkv = static_dim(kt.shape[2], node, "kv heads")
    block = static_dim(node.arg(3).type.shape[1], node, "block")
    batch, sq = ctx.dim(qt.shape[0]), ctx.dim(qt.shape[1])
    pages = ctx.dim(node.arg(3).type.shape[0])
    blocks = ctx.dim(node.arg(5).type.shape[1])
    blk = tirx.IntImm("int64", block)

    def rows(table: te.Tensor, lens: te.Tensor, query: te.Tensor) -> te.Tensor:
        seq = query.shape[1]

        def row(n: tirx.Var, _: tirx.Var) -> tirx.PrimExpr:
            pos = lens[n // seq].astype("int64") + n % seq
            page = table[n // seq, tirx.floordiv(pos, blk)].astype("int64")
            return page * blk + tirx.floormod(pos, blk)

        return te.compute((query.shape[0] * seq, 1), row, name="paged_rows")

    def visible(lens: te.Tensor, query: te.Tensor, table: te.Tensor) -> te.Tensor:
        def rule(b: tirx.Var, _: tirx.Var, i: tirx.Var, j: tirx.Var) -> tirx.PrimExpr:
            return j <= lens[b].astype("int64") + i

        shape = (query.shape[0], 1, query.shape[1], table.shape[1] * blk)
        return te.compute(shape, rule, name="paged_visible")

    index = ctx.bb.emit_te(rows, block_table, cache_lens, q, primfunc_name_hint="paged_rows")
    allowed = ctx.bb.emit_te(visible, cache_lens, q, block_table, primfunc_name_hint="paged_mask")

    def write(pool: relax.Expr, new: relax.Expr, width: int) -> relax.Expr:
        flat = op.reshape(pool, [pages * blk, hkv, width])
        updates = op.reshape(new, [batch * sq, hkv, width])
        return ctx.emit(op.reshape(op.scatter_nd(flat, index, updates), [pages, blk, hkv, width]))

    def read(pool: relax.Expr, width: int) -> relax.Expr:
        gathered = op.take(pool, block_table, axis=0, mode="clip")  # (B, blocks, block, H, D)
        tokens = op.reshape(gathered, [batch, blocks * blk, hkv, width])
        return ctx.emit(op.permute_dims(tokens, [0, 2, 1, 3]))

    present_k, present_v = write(key_pages, k, d), write(value_pages, v, dv)
    keys, values = read(present_k, d), read(present_v, dv)
    out = _attend(ctx, node, q, keys, values, blocks * blk, allowed)
    return [out, present_k, present_v]
