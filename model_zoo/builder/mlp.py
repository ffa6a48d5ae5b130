"""MLP sub-builders: the dense MLP (plain or gated) and the mixture-of-experts MLP."""

from __future__ import annotations

import math

from irgraph.ir import Value
from irgraph.model_zoo.builder.context import BuildContext, feature_width
from irgraph.model_zoo.config import MoeConfig


def dense_mlp(
    ctx: BuildContext,
    h: Value,
    prefix: str,
    *,
    width: int | None = None,
    hidden: int | None = None,
    gated: bool | None = None,
    bias: bool | None = None,
) -> Value:
    """down(act(gate(h)) · up(h)) when gated, else down(act(up(h)))."""
    cfg = ctx.cfg
    width = width or cfg.ffn
    hidden = hidden or cfg.hidden
    gated = cfg.gated_mlp if gated is None else gated
    bias = cfg.mlp_bias if bias is None else bias
    up = ctx.linear(h, f"{prefix}.up", width, hidden, bias)
    if gated:
        gate = ctx.linear(h, f"{prefix}.gate", width, hidden, bias)
        inner = ctx.b.glu(gate, up, act=cfg.activation.value)
    else:
        inner = ctx.act(up, cfg.activation)
    return ctx.linear(inner, f"{prefix}.down", hidden, width, bias, hint="mlp_out")


def is_moe_layer(moe: MoeConfig | None, layer: int) -> bool:
    """MoE in every `every`-th layer after the first `first_dense`.

    GLaM: odd layers; DeepSeek-v2: all but layer 0.
    """
    return moe is not None and layer >= moe.first_dense and layer % moe.every == moe.every - 1


def moe_mlp(ctx: BuildContext, h: Value, prefix: str) -> Value:
    """Routed experts (+ shared experts) of layer `prefix`, summed. Arctic's dense residual MLP is
    a separate branch of the block (stack.feeds)."""
    cfg, b, moe = ctx.cfg, ctx.b, ctx.cfg.require_moe("a routed MLP")
    gated = cfg.gated_mlp if moe.gated is None else moe.gated
    e, f, d = moe.num_experts, moe.expert_ffn, feature_width(h)
    if moe.domains:  # PanGu-Σ: a fixed random (domain, token) -> expert map, no learned gate
        table = ctx.routing_table(
            f"{prefix}.moe.routes", moe.domains, cfg.vocab_size, e // moe.domains
        )
        ids, domain = b.graph.inputs["input_ids"], b.graph.inputs["domain_ids"]
        weights, indices = b.moe_fixed_router(ids, domain, table)
    else:
        router = ctx.param(f"{prefix}.moe.router.weight", (e, d), 1 / math.sqrt(d))
        weights, indices = b.moe_router(
            h,
            router,
            top_k=moe.top_k,
            scoring=moe.scoring,
            normalize=moe.normalize,
            n_group=moe.n_group,
            topk_group=moe.topk_group,
            scaling=moe.scaling,
        )
    up = ctx.param(f"{prefix}.moe.experts.up", (e, f, d), 1 / math.sqrt(d))
    down = ctx.param(f"{prefix}.moe.experts.down", (e, d, f), 1 / math.sqrt(f))
    gate = ctx.param(f"{prefix}.moe.experts.gate", (e, f, d), 1 / math.sqrt(d)) if gated else None
    out = b.moe_experts(
        h, weights, indices, up, down, gate, act=cfg.activation.value, hint="moe_out"
    )
    if moe.shared_experts:
        shared = dense_mlp(
            ctx,
            h,
            f"{prefix}.moe.shared",
            width=moe.shared_experts * f,
            hidden=d,
            gated=gated,
            bias=False,
        )
        out = b.add(out, shared, hint="moe_out")
    return out


def mlp(
    ctx: BuildContext, h: Value, layer: int, stack: str = "layers", width: int | None = None
) -> Value:
    """The MLP of layer `layer` of `stack`: MoE where the config routes, dense elsewhere."""
    prefix = f"{stack}.{layer}"
    if is_moe_layer(ctx.cfg.moe, layer):
        return moe_mlp(ctx, h, prefix)
    return dense_mlp(ctx, h, f"{prefix}.mlp", width=width, hidden=feature_width(h))
