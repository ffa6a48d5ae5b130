"""Blocks and stacks: decoder-only (causal or prefix-LM) and encoder-decoder models.

A block is chosen by two config axes: `block` (sequential, parallel with one
shared norm, parallel with two norms) and `norm_placement` (pre, post,
DeepNorm, sandwich). Everything a stack's attention layers share (positions,
masks, position bias) is made once per stack.
"""

from __future__ import annotations

from collections.abc import Callable

from irgraph.ir import Value
from irgraph.model_zoo.builder.attention import (
    AttnInputs,
    cross_attention,
    latent_attention,
    relative_bias,
    self_attention,
)
from irgraph.model_zoo.builder.context import BuildContext, feature_width
from irgraph.model_zoo.builder.mlp import dense_mlp, is_moe_layer, mlp, moe_mlp
from irgraph.model_zoo.config import Arch, Block, NormPlacement, Position

Sublayer = Callable[[Value], Value]


def residual(ctx: BuildContext, x: Value, norm_name: str, f: Sublayer) -> Value:
    """x combined with f by the config's norm placement."""
    cfg, b = ctx.cfg, ctx.b
    width = feature_width(x)
    placement = cfg.norm_placement
    if placement is NormPlacement.PRE:
        return b.add(x, f(ctx.norm(x, norm_name, width)), hint="x")
    if placement is NormPlacement.POST:
        return ctx.norm(b.add(x, f(x)), norm_name, width)
    if placement is NormPlacement.DEEPNORM:
        alpha = cfg.deepnorm_alpha or (2 * cfg.layers) ** 0.25  # DeepNet's decoder-only α
        return ctx.norm(b.add(b.scale(x, factor=alpha), f(x)), norm_name, width)
    post_name = norm_name.replace("_norm", "_post_norm")  # SANDWICH (Grok-1): x + post(f(pre(x)))
    return b.add(x, ctx.norm(f(ctx.norm(x, norm_name, width)), post_name, width), hint="x")


def feeds(
    ctx: BuildContext, layer: int, stack: str = "layers", width: int | None = None
) -> tuple[Sublayer, Sublayer | None]:
    """Layer `layer`'s MLP branch, and the routed MLP that runs beside attention where the config
    has Arctic's dense+MoE residual layout (else None)."""
    cfg, prefix = ctx.cfg, f"{stack}.{layer}"
    if cfg.moe is None or not cfg.moe.residual_dense or not is_moe_layer(cfg.moe, layer):
        return (lambda h: mlp(ctx, h, layer, stack, width)), None
    return (
        (lambda h: dense_mlp(ctx, h, f"{prefix}.mlp", width=width, hidden=feature_width(h))),
        (lambda h: moe_mlp(ctx, h, prefix)),
    )


def block(
    ctx: BuildContext,
    x: Value,
    prefix: str,
    attend: Sublayer,
    feed: Sublayer,
    cross: Sublayer | None = None,
    beside: Sublayer | None = None,
) -> Value:
    """One transformer layer: attention (+ cross-attention) and MLP around the residual stream;
    `beside` is a routed MLP reading the layer input in parallel with attention (Arctic)."""
    b, width = ctx.b, feature_width(x)
    if ctx.cfg.block is not Block.SEQUENTIAL:
        # PARALLEL: x + attn(LN(x)) + mlp(LN(x)) with one shared norm (PaLM, GPT-J);
        # PARALLEL_TWO_NORMS: x + attn(LN1(x)) + mlp(LN2(x)) (GPT-NeoX). Cross-attention, where a
        # parallel decoder has it (CodeT5+), is a pre-norm residual step between the two branches.
        h = ctx.norm(x, f"{prefix}.attn_norm", width)
        h_mlp = h if ctx.cfg.block is Block.PARALLEL else ctx.norm(x, f"{prefix}.mlp_norm", width)
        y = b.add(x, attend(h))
        if cross is not None:
            y = b.add(y, cross(ctx.norm(y, f"{prefix}.cross_norm", width)))
        return b.add(y, feed(h_mlp), hint="x")
    x_in = x
    x = residual(ctx, x, f"{prefix}.attn_norm", attend)
    if cross is not None:
        x = residual(ctx, x, f"{prefix}.cross_norm", cross)
    if beside is not None:
        # Arctic (parallel_attn_mlp_res): the dense MLP reads the attention output through its
        # own norm; the MoE reads the layer's input (pre-attention) through mlp_norm.
        x = residual(ctx, x, f"{prefix}.residual_norm", feed)
        return b.add(x, beside(ctx.norm(x_in, f"{prefix}.mlp_norm", width)), hint="x")
    return residual(ctx, x, f"{prefix}.mlp_norm", feed)


def embed(
    ctx: BuildContext,
    ids: Value,
    positions: Value | None,
    table: str,
    pos_table: str,
    width: int,
    rows: int = 0,
) -> Value:
    """Token embedding (+ learned positions: `rows` of them, default max_position)."""
    cfg, b = ctx.cfg, ctx.b
    # Encoder and decoder of a same-width encoder-decoder share one token table (T5).
    weight = b.graph.params.get(table) or ctx.param(table, (cfg.vocab_size, width), width**-0.5)
    x = b.embedding(ids, weight, hint="x")
    if cfg.embedding_scale != 1.0:
        x = b.scale(x, factor=cfg.embedding_scale, hint="x")
    if cfg.position is Position.LEARNED:
        x = b.add(
            x,
            b.embedding(positions, ctx.param(pos_table, (rows or cfg.max_position, width), 0.1)),
            hint="x",
        )
    return x


def position_bias(
    ctx: BuildContext, x: Value, key_mask: Value, table: str, bidirectional: bool, heads: int
) -> Value | None:
    cfg, b = ctx.cfg, ctx.b
    if cfg.position is Position.ALIBI:
        return b.alibi(key_mask, num_heads=heads, hint="alibi")
    if cfg.position is Position.RELATIVE and not cfg.relative_per_layer:
        return relative_bias(ctx, x, key_mask, table, bidirectional, heads)
    return None  # none, or one per layer (self_attention makes it)


def lm_head(ctx: BuildContext, x: Value, final_norm: bool = True) -> None:
    cfg, b = ctx.cfg, ctx.b
    if cfg.final_norm and final_norm:
        x = ctx.norm(x, "norm")
    weight = (
        ctx.b.graph.params["embed.weight"]
        if cfg.tied_embeddings
        else ctx.param("lm_head.weight", (cfg.vocab_size, cfg.hidden), cfg.hidden**-0.5)
    )
    bias = ctx.param("lm_head.bias", (cfg.vocab_size,), 0.02) if cfg.lm_head_bias else None
    logits = b.linear(x, weight, bias, hint="logits")
    if cfg.logit_scale != 1.0:
        logits = b.scale(logits, factor=cfg.logit_scale, hint="logits")
    b.output("logits", logits)


def build_decoder_only(ctx: BuildContext) -> None:
    cfg, b = ctx.cfg, ctx.b
    ids = b.input("input_ids", "i64[batch, seq]")
    positions = b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    prefix_len = b.input("prefix_len", "i64[batch]") if cfg.arch is Arch.PREFIX_LM else None
    if cfg.moe is not None and cfg.moe.domains:
        b.input("domain_ids", "i64[batch]")  # PanGu-Σ: each row's domain picks its experts
    x = embed(ctx, ids, positions, "embed.weight", "embed_positions.weight", cfg.hidden)
    if cfg.embedding_norm:
        x = ctx.norm(x, "embed_norm")
    bias = position_bias(ctx, x, mask, "relative_bias.weight", False, cfg.heads)
    io = AttnInputs(positions, mask, bias, prefix_len)
    for i in range(cfg.layers):
        prefix = f"layers.{i}"

        def attend(h: Value, prefix: str = prefix, i: int = i) -> Value:
            if cfg.mla is not None:
                return latent_attention(ctx, h, f"{prefix}.attn", i, io)
            return self_attention(ctx, h, f"{prefix}.attn", i, io)

        feed, beside = feeds(ctx, i)
        x = block(ctx, x, prefix, attend, feed, beside=beside)
    if cfg.query_layer:
        # PanGu-α normalises the last block's output, then runs the query layer straight into
        # the (tied) head: the final norm sits below the query layer, none above it.
        if cfg.final_norm:
            x = ctx.norm(x, "norm")
        x = query_layer(ctx, x, io)
    lm_head(ctx, x, final_norm=not cfg.query_layer)


def query_layer(ctx: BuildContext, x: Value, io: AttnInputs) -> Value:
    """PanGu-α's top layer (survey Eq. 3): attention whose query is a learned position embedding."""
    cfg, b = ctx.cfg, ctx.b
    query = b.embedding(
        io.positions, ctx.param("query_layer.embed.weight", (cfg.max_position, cfg.hidden), 0.1)
    )
    h = ctx.norm(x, "query_layer.attn_norm")
    x = b.add(
        x, self_attention(ctx, h, "query_layer.attn", cfg.layers, io, query_source=query), hint="x"
    )
    return b.add(
        x, dense_mlp(ctx, ctx.norm(x, "query_layer.mlp_norm"), "query_layer.mlp"), hint="x"
    )


def build_encoder_decoder(ctx: BuildContext) -> None:
    cfg, b = ctx.cfg, ctx.b
    enc_ids = b.input("input_ids", "i64[batch, enc_seq]")
    enc_mask = b.input("encoder_attention_mask", "i64[batch, enc_seq]")
    dec_ids = b.input("decoder_input_ids", "i64[batch, seq]")
    positions = b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    enc_pos = (
        b.input("encoder_position_ids", "i64[batch, enc_seq]")
        if cfg.position in (Position.LEARNED, Position.ROTARY)
        else positions
    )

    # Encoder: bidirectional, no cache; it may be narrower than the decoder (CodeT5+).
    width = cfg.encoder_hidden or cfg.hidden
    heads = cfg.encoder_heads or cfg.heads
    head_dim = width // cfg.encoder_heads if cfg.encoder_heads else cfg.dim_per_head
    kv_heads = cfg.encoder_heads or cfg.n_kv_heads
    table = "embed.weight" if width == cfg.hidden else "encoder.embed.weight"
    context = cfg.encoder_max_position or cfg.max_position  # AlphaCode: 1536 in, 768 out
    e = embed(ctx, enc_ids, enc_pos, table, "encoder.embed_positions.weight", width, context)
    enc_bias = position_bias(ctx, e, enc_mask, "encoder.relative_bias.weight", True, heads)
    enc_io = AttnInputs(enc_pos, enc_mask, enc_bias, causal=False, cached=False)
    for i in range(cfg.encoder_layers):
        prefix = f"encoder.layers.{i}"

        def encoder_attend(h: Value, prefix: str = prefix, i: int = i) -> Value:
            return self_attention(
                ctx,
                h,
                f"{prefix}.attn",
                -1,
                enc_io,
                hidden=width,
                heads=heads,
                kv_heads=kv_heads,
                head_dim=head_dim,
                stack_layer=i,
                rotary=cfg.encoder_rotary,
            )

        feed, beside = feeds(ctx, i, "encoder.layers", cfg.encoder_ffn or None)
        e = block(ctx, e, prefix, encoder_attend, feed, beside=beside)
    if cfg.final_norm:
        e = ctx.norm(e, "encoder.norm", width)
    if width != cfg.hidden:
        e = ctx.linear(e, "encoder.proj", cfg.hidden, width, True, hint="memory")

    # Decoder: causal self-attention with the KV cache, then cross-attention over the encoder out.
    x = embed(ctx, dec_ids, positions, "embed.weight", "embed_positions.weight", cfg.hidden)
    bias = position_bias(ctx, x, mask, "relative_bias.weight", False, cfg.heads)
    io = AttnInputs(positions, mask, bias)
    first_cross = cfg.layers - (cfg.cross_attention_layers or cfg.layers)
    for i in range(cfg.layers):
        prefix = f"layers.{i}"

        def attend(h: Value, prefix: str = prefix, i: int = i) -> Value:
            return self_attention(ctx, h, f"{prefix}.attn", i, io)

        def cross(h: Value, prefix: str = prefix) -> Value:
            return cross_attention(ctx, h, e, enc_mask, f"{prefix}.cross_attn")

        feed, beside = feeds(ctx, i)
        x = block(ctx, x, prefix, attend, feed, cross if i >= first_cross else None, beside)
    lm_head(ctx, x)
