"""Attention sub-builders: self-attention (MHA/MQA/GQA), DeepSeek-v2 latent, cross-attention.

q/k/v leave their projections as [batch, seq, heads·head_dim] and are viewed
as [batch, seq, heads, head_dim] for rotary and attention; the KV cache of
decoder layer i is the graph input past_key_values.{i}.* (present.{i}.* out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from irgraph.ir import Value
from irgraph.model_zoo.builder.context import BuildContext
from irgraph.model_zoo.config import Norm, Position, RopeScaling, RotaryConfig
from irgraph.ops.rotary import yarn_mscale

MLA_NORM_EPS = 1e-6


@dataclass(frozen=True)
class AttnInputs:
    """What every attention layer of one stack shares."""

    positions: Value  # position_ids [batch, seq]
    key_mask: Value  # attention_mask [batch, past+seq]
    bias: Value | None = None  # ALiBi or relative-position bias
    prefix_len: Value | None = None  # prefix-LM
    causal: bool = True
    cached: bool = True  # decoder stacks carry a KV cache; encoders do not


def rotary_attrs(rotary: RotaryConfig, head_dim: int) -> dict[str, object]:
    rotary_dim = 0 if rotary.fraction >= 1 else int(head_dim * rotary.fraction) // 2 * 2
    return dict(
        rotary_dim=rotary_dim,
        interleaved=rotary.interleaved,
        base=rotary.base,
        scaling=rotary.scaling.value,
        factor=rotary.factor,
        original_max_position=rotary.original_max_position,
        low_freq_factor=rotary.low_freq_factor,
        high_freq_factor=rotary.high_freq_factor,
        beta_fast=rotary.beta_fast,
        beta_slow=rotary.beta_slow,
        mscale=rotary.mscale,
        mscale_all_dim=rotary.mscale_all_dim,
    )


def _cache(ctx: BuildContext, layer: int, kv_heads: int, head_dim: int) -> tuple[Value, Value]:
    shape = f"f32[batch, {kv_heads}, past, {head_dim}]"
    return (
        ctx.b.input(f"past_key_values.{layer}.key", shape),
        ctx.b.input(f"past_key_values.{layer}.value", shape),
    )


def self_attention(
    ctx: BuildContext,
    h: Value,
    prefix: str,
    layer: int,
    io: AttnInputs,
    *,
    hidden: int | None = None,
    heads: int | None = None,
    kv_heads: int | None = None,
    head_dim: int | None = None,
    query_source: Value | None = None,
    stack_layer: int | None = None,
    rotary: RotaryConfig | None = None,
) -> Value:
    """Multi-head self-attention of h; `query_source` replaces h as the query input (PanGu-α).

    `layer` names the KV cache (-1: none); `stack_layer` (default `layer`) is the layer's index in
    its stack, which picks its kind in the config's attention_pattern; `rotary` replaces the
    config's rotary settings (an encoder's own, CodeT5+)."""
    cfg, b = ctx.cfg, ctx.b
    hidden = hidden or cfg.hidden
    nh = heads or cfg.heads
    kv = kv_heads or cfg.n_kv_heads
    hd = head_dim or cfg.dim_per_head
    q = ctx.linear(
        query_source if query_source is not None else h,
        f"{prefix}.q",
        nh * hd,
        hidden,
        cfg.qkv_bias,
    )
    k = ctx.linear(h, f"{prefix}.k", kv * hd, hidden, cfg.qkv_bias)
    v = ctx.linear(h, f"{prefix}.v", kv * hd, hidden, cfg.qkv_bias)
    q = b.reshape(q, shape=[0, 0, nh, hd], hint="q")  # (B, S, nh, hd)
    k = b.reshape(k, shape=[0, 0, kv, hd], hint="k")  # (B, S, kv, hd)
    v = b.reshape(v, shape=[0, 0, kv, hd], hint="v")
    rotary = rotary or cfg.rotary
    if cfg.position is Position.ROTARY and rotary is not None:
        attrs = rotary_attrs(rotary, hd)
        q = b.rotary(q, io.positions, hint="q_rot", **attrs)
        k = b.rotary(k, io.positions, hint="k_rot", **attrs)
    bias = io.bias
    if cfg.position is Position.RELATIVE and cfg.relative_per_layer:
        table = f"{prefix}.relative_bias.weight"
        bias = relative_bias(ctx, h, io.key_mask, table, not io.causal, nh)
    if cfg.position is Position.TRANSFORMER_XL:
        q, bias = xl_position(ctx, q, prefix, io.key_mask, hidden, nh, hd)
    past_k, past_v = _cache(ctx, layer, kv, hd) if io.cached else (None, None)
    window, stride = cfg.layer_mask(layer if stack_layer is None else stack_layer)
    out, present_k, present_v = b.attention(
        q,
        k,
        v,
        past_k,
        past_v,
        io.key_mask,
        bias,
        io.prefix_len,
        causal=io.causal,
        window=window,
        stride=stride,
        scale=cfg.attn_scale,
        softcap=cfg.attn_softcap,
        hint="attn",
    )
    if io.cached:
        b.output(f"present.{layer}.key", present_k)
        b.output(f"present.{layer}.value", present_v)
    out = b.reshape(out, shape=[0, 0, nh * hd])  # (B, S, nh·hd)
    return ctx.linear(out, f"{prefix}.o", hidden, nh * hd, cfg.out_bias, hint="attn_out")


def relative_bias(
    ctx: BuildContext, x: Value, key_mask: Value, table: str, bidirectional: bool, heads: int
) -> Value:
    """T5's bucketed relative-position bias [batch, heads, seq, past+seq] from table `table`."""
    cfg = ctx.cfg
    weight = ctx.param(table, (cfg.relative_buckets, heads), 0.5)
    return ctx.b.relative_position_bias(
        x,
        key_mask,
        weight,
        bidirectional=bidirectional,
        max_distance=cfg.relative_max_distance,
        hint="rel_bias",
    )


def xl_position(
    ctx: BuildContext, q: Value, prefix: str, key_mask: Value, hidden: int, nh: int, hd: int
) -> tuple[Value, Value]:
    """Transformer-XL's relative attention (Dai et al. 2019, Sec. 3.3) as (q + u, bias): the
    content terms (a)+(c) are attention of q + u on k, the position terms (b)+(d) the bias
    scale·(q + v)ᵀ·W_r·R_{i-j}. u, v and W_r belong to the layer (the released code's `untie_r`).
    """
    scale = ctx.cfg.attn_scale or 1 / math.sqrt(hd)
    u = ctx.param(f"{prefix}.r_w_bias", (nh, hd), 0.1)  # (nh, hd): broadcasts over (B, S, nh, hd)
    v = ctx.param(f"{prefix}.r_r_bias", (nh, hd), 0.1)
    w_r = ctx.param(f"{prefix}.r.weight", (nh * hd, hidden), 1 / math.sqrt(hidden))
    bias = ctx.b.xl_relative_bias(ctx.b.add(q, v), key_mask, w_r, scale=scale, hint="xl_bias")
    return ctx.b.add(q, u, hint="q"), bias


def latent_attention(ctx: BuildContext, h: Value, prefix: str, layer: int, io: AttnInputs) -> Value:
    """DeepSeek-v2 MLA: low-rank queries, a cached KV latent plus a shared rotated key part."""
    cfg, b = ctx.cfg, ctx.b
    mla, rotary = cfg.require_mla("latent attention"), cfg.require_rotary("latent attention")
    nh, dq = cfg.heads, mla.nope_dim + mla.rope_dim
    # DeepSeek-v2's q_a/kv_a norms keep RMSNorm's default eps (1e-6) whatever rms_norm_eps says.
    eps = MLA_NORM_EPS
    if mla.q_rank:
        q = ctx.linear(h, f"{prefix}.q_a", mla.q_rank, cfg.hidden, cfg.qkv_bias)
        q = ctx.norm(q, f"{prefix}.q_a_norm", mla.q_rank, Norm.RMS, eps)
        q = ctx.linear(q, f"{prefix}.q_b", nh * dq, mla.q_rank, False)
    else:
        q = ctx.linear(h, f"{prefix}.q", nh * dq, cfg.hidden, False)
    q = b.reshape(q, shape=[0, 0, nh, dq])  # (B, S, nh, nope+rope)
    q_nope, q_rope = b.split(q, axis=3, sizes=[mla.nope_dim, mla.rope_dim])
    attrs = rotary_attrs(rotary, mla.rope_dim)
    q = b.concat(q_nope, b.rotary(q_rope, io.positions, **attrs), axis=3, hint="q")
    kv = ctx.linear(h, f"{prefix}.kv_a", mla.kv_rank + mla.rope_dim, cfg.hidden, cfg.qkv_bias)
    latent, k_rope = b.split(kv, axis=2, sizes=[mla.kv_rank, mla.rope_dim])
    latent = ctx.norm(latent, f"{prefix}.kv_a_norm", mla.kv_rank, Norm.RMS, eps)
    k_rope = b.reshape(
        k_rope, shape=[0, 0, 1, mla.rope_dim]
    )  # (B, S, 1, rope): one key part for all heads
    k_rope = b.rotary(k_rope, io.positions, **attrs)
    kv_b = ctx.param(
        f"{prefix}.kv_b.weight",
        (nh * (mla.nope_dim + mla.v_dim), mla.kv_rank),
        1 / math.sqrt(mla.kv_rank),
    )
    past = ctx.b.input(
        f"past_key_values.{layer}.latent", f"f32[batch, past, {mla.kv_rank + mla.rope_dim}]"
    )
    scale = cfg.attn_scale or 1 / math.sqrt(dq)
    if rotary.scaling is RopeScaling.YARN and rotary.mscale_all_dim:
        # With YaRN, DeepSeek-v2 raises the softmax temperature:
        # scale · mscale(factor, mscale_all_dim)².
        scale *= yarn_mscale(rotary.factor, rotary.mscale_all_dim) ** 2
    out, present = b.latent_attention(
        q,
        latent,
        k_rope,
        kv_b,
        past,
        io.key_mask,
        nope_dim=mla.nope_dim,
        v_dim=mla.v_dim,
        scale=scale,
        causal=io.causal,
        hint="attn",
    )
    b.output(f"present.{layer}.latent", present)
    out = b.reshape(out, shape=[0, 0, nh * mla.v_dim])  # (B, S, nh·v_dim)
    return ctx.linear(out, f"{prefix}.o", cfg.hidden, nh * mla.v_dim, cfg.out_bias, hint="attn_out")


def cross_attention(
    ctx: BuildContext, h: Value, memory: Value, memory_mask: Value, prefix: str
) -> Value:
    """Decoder queries over the encoder output (no cache: K/V are recomputed from `memory`)."""
    cfg, b = ctx.cfg, ctx.b
    nh, kv, hd = cfg.heads, cfg.n_kv_heads, cfg.dim_per_head
    q = b.reshape(
        ctx.linear(h, f"{prefix}.q", nh * hd, cfg.hidden, cfg.qkv_bias), shape=[0, 0, nh, hd]
    )
    k = b.reshape(
        ctx.linear(memory, f"{prefix}.k", kv * hd, cfg.hidden, cfg.qkv_bias), shape=[0, 0, kv, hd]
    )
    v = b.reshape(
        ctx.linear(memory, f"{prefix}.v", kv * hd, cfg.hidden, cfg.qkv_bias), shape=[0, 0, kv, hd]
    )
    out, _, _ = b.attention(
        q,
        k,
        v,
        None,
        None,
        memory_mask,
        causal=False,
        scale=cfg.attn_scale,
        softcap=cfg.attn_softcap,
        hint="cross",
    )
    out = b.reshape(out, shape=[0, 0, nh * hd])  # (B, S, nh·hd)
    return ctx.linear(out, f"{prefix}.o", cfg.hidden, nh * hd, cfg.out_bias, hint="cross_out")
