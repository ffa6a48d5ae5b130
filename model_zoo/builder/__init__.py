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

from irgraph.ir import Graph
from irgraph.model_zoo.builder.context import BuildContext
from irgraph.model_zoo.builder.stack import build_decoder_only, build_encoder_decoder
from irgraph.model_zoo.config import Arch, ModelConfig


def graph_meta(config: ModelConfig) -> dict:
    meta = {"model": config.name, "arch": config.arch.value, "vocab_size": config.vocab_size,
            "bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id,
            "pad_token_id": config.pad_token_id, "max_position": config.max_position}
    if config.arch is Arch.ENCODER_DECODER:
        meta["decoder_start_token_id"] = config.decoder_start_token_id
    return meta


def build_graph(config: ModelConfig, *, weights: Literal["random"] | None = "random", seed: int = 0) -> Graph:
    """The graph of `config`; weights seeded-random, or None for a structure-only graph."""
    config.validate()
    ctx = BuildContext(config, graph_meta(config))
    if config.arch is Arch.ENCODER_DECODER:
        build_encoder_decoder(ctx)
    else:
        build_decoder_only(ctx)
    return ctx.finish(weights == "random", seed)


__all__ = ["build_graph", "graph_meta"]
