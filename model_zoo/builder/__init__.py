"""The one parametric builder: ModelConfig -> irgraph Graph.

    graph = build_graph(config)                  # seeded random weights
    graph = build_graph(config, weights=None)    # structure only: nothing allocated

Behaviour is chosen by config fields only (never by model name); genuinely
different structure lives in its own sub-builder: attention.py (MHA/MQA/GQA,
latent attention, cross-attention), mlp.py (dense, MoE), stack.py (blocks,
decoder-only and encoder-decoder stacks, PanGu-α's query layer).
"""

from __future__ import annotations

from typing import Literal

from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.model_zoo.builder.context import BuildContext
from irgraph.model_zoo.builder.stack import build_decoder_only, build_encoder_decoder
from irgraph.model_zoo.config import Arch, Block, ModelConfig, NormPlacement


def graph_meta(config: ModelConfig) -> dict[str, object]:
    meta: dict[str, object] = {
        "model": config.name,
        "arch": config.arch.value,
        "vocab_size": config.vocab_size,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        "max_position": config.max_position,
    }
    if config.arch is Arch.ENCODER_DECODER:
        meta["decoder_start_token_id"] = config.decoder_start_token_id
        meta["encoder_max_position"] = config.encoder_max_position or config.max_position
    return meta


def check_buildable(config: ModelConfig) -> None:
    """Reject combinations the sub-builders would drop silently (ConfigError names the field)."""
    enc_dec, mla = config.arch is Arch.ENCODER_DECODER, config.mla is not None
    rules = (  # (unsupported?, field, why)
        (enc_dec and mla, "mla", "latent attention is built for decoder-only stacks"),
        (
            enc_dec and config.query_layer,
            "query_layer",
            "the query layer tops a decoder-only stack",
        ),
        (enc_dec and config.embedding_norm, "embedding_norm", "built for decoder-only stacks"),
        (
            mla and config.arch is Arch.PREFIX_LM,
            "arch",
            "latent attention has no bidirectional prefix",
        ),
        (mla and config.sliding_window > 0, "sliding_window", "latent attention has no window"),
        (
            mla and bool(config.attention_pattern),
            "attention_pattern",
            "latent attention has no window or stride",
        ),
        (mla and config.attn_softcap > 0, "attn_softcap", "latent attention has no softcap"),
        (
            config.block is not Block.SEQUENTIAL and config.norm_placement is not NormPlacement.PRE,
            "norm_placement",
            f"{config.block.value} blocks are pre-norm",
        ),
        (
            config.moe is not None
            and config.moe.residual_dense
            and (
                config.block is not Block.SEQUENTIAL
                or config.norm_placement is not NormPlacement.PRE
            ),
            "moe",
            "moe.residual_dense (Arctic) is defined for sequential pre-norm blocks",
        ),
    )
    for unsupported, key, why in rules:
        if unsupported:
            raise ConfigError(
                f"unsupported combination: {why}",
                got=getattr(config, key),
                where=f"{config.name}: {key}",
            )


def build_graph(
    config: ModelConfig, *, weights: Literal["random"] | None = "random", seed: int = 0
) -> Graph:
    """The graph of `config`; weights seeded-random, or None for a structure-only graph."""
    if weights not in ("random", None):
        raise ConfigError(
            "unknown weights mode", expected="'random' | None", got=weights, where=config.name
        )
    config.validate()
    check_buildable(config)
    ctx = BuildContext(config, graph_meta(config))
    if config.arch is Arch.ENCODER_DECODER:
        build_encoder_decoder(ctx)
    else:
        build_decoder_only(ctx)
    return ctx.finish(weights == "random", seed)


__all__ = ["build_graph", "check_buildable", "graph_meta"]
