"""Tiny twins: the same architecture at dims that run in the interpreter in milliseconds.

Every structural feature survives: the kind of attention (MQA stays one KV head,
GQA keeps fewer KV heads than query heads), encoder-decoder, prefix-LM, MoE
routing (every-other-layer and dense-first layouts still appear within two
layers), latent attention, the query layer, DeepNorm, sandwich norms, sliding
windows and rotary scalings (with a small original context so scaling engages
at test lengths), a dense MLP as wide as the model (Arctic's residual MLP),
attention whose heads·head_dim differs from the model width in the published
model's direction (T5, PaLM, Codex), a head count that is not a power of two
where ALiBi's slopes depend on it (BLOOM's 112), and group-limited routing with
enough groups and experts to choose (DeepSeek-v2). Every linear's input width
is a multiple of 32, as quantization groups and GGUF blocks need.
Only sizes shrink; an entry's `tiny_overrides` win.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from irgraph.model_zoo.config import (
    LayerAttention,
    MlaConfig,
    ModelConfig,
    MoeConfig,
    Position,
    RotaryConfig,
)

VOCAB, HIDDEN, HEADS, HEAD_DIM, FFN, LAYERS, MAX_POSITION = 256, 64, 4, 16, 128, 2, 128


def _heads(config: ModelConfig) -> int:
    """4, or 6 where ALiBi's published head count is not a power of two: its slopes then take
    the second branch (BLOOM's 112 heads, BloombergGPT's 40)."""
    odd = config.heads & (config.heads - 1) != 0
    return 6 if config.position is Position.ALIBI and odd else HEADS


def _head_dim(config: ModelConfig) -> int:
    """16 where heads·head_dim = hidden; else 32 (wider: T5, LaMDA, GLaM) or 8 (narrower: PaLM,
    Codex), so the twin's attention is not square either (4 heads: 128 or 32 vs 64)."""
    inner = config.heads * config.dim_per_head
    if inner == config.hidden:
        return HEAD_DIM
    return 2 * HEAD_DIM if inner > config.hidden else HEAD_DIM // 2


def _kv_heads(config: ModelConfig) -> int:
    if config.n_kv_heads == 1:
        return 1  # multi-query
    if config.n_kv_heads < config.heads:
        return 2  # grouped-query
    return 0  # multi-head


def _rotary(rotary: RotaryConfig | None) -> RotaryConfig | None:
    if rotary is None or not rotary.original_max_position:
        return rotary
    return dataclasses.replace(rotary, original_max_position=16)


def _moe(moe: MoeConfig | None) -> MoeConfig | None:
    if moe is None:
        return None
    # Group-limited routing (DeepSeek-v2: 160 experts, 8 groups, keep 3, top-6) keeps enough
    # experts and groups to choose: 16 experts in 4 groups, keep 2, top-4.
    grouped = moe.n_group > 1
    return dataclasses.replace(
        moe,
        num_experts=16 if grouped else 4,
        top_k=4 if grouped else min(moe.top_k, 2),
        expert_ffn=32,
        first_dense=min(moe.first_dense, 1),
        every=min(moe.every, LAYERS),
        shared_experts=min(moe.shared_experts, 1),
        n_group=4 if grouped else 1,
        topk_group=2 if grouped else 1,
        domains=min(moe.domains, 2),  # random routed experts: 2 domains of 2 experts
    )


def _pattern(pattern: tuple[LayerAttention, ...]) -> tuple[LayerAttention, ...]:
    """Bands of 4 and strides of 3 tokens: both bite within the tests' 10-20 tokens."""
    spans = {"local": 4, "strided": 3, "dense": 0}
    return tuple(dataclasses.replace(p, span=spans[p.kind.value]) for p in pattern)


def _mla(mla: MlaConfig | None) -> MlaConfig | None:
    if mla is None:
        return None
    return MlaConfig(kv_rank=32, q_rank=96 if mla.q_rank else 0, nope_dim=16, rope_dim=8, v_dim=16)


def tiny_config(config: ModelConfig, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The tiny twin of a published config."""
    enc_narrow = bool(config.encoder_hidden and config.encoder_hidden != config.hidden)
    heads = _heads(config)
    hidden = HIDDEN if heads == HEADS else heads * HEAD_DIM  # 6 heads: 96 wide, still square
    changes: dict[str, Any] = dict(
        name=f"{config.name}-tiny",
        vocab_size=VOCAB,
        hidden=hidden,
        heads=heads,
        head_dim=_head_dim(config),
        kv_heads=_kv_heads(config),
        ffn=hidden if config.ffn == config.hidden else FFN,
        layers=LAYERS,
        encoder_layers=LAYERS if config.encoder_layers else 0,
        encoder_hidden=32 if enc_narrow else 0,
        encoder_heads=2 if enc_narrow else 0,
        encoder_ffn=64 if enc_narrow else 0,
        cross_attention_layers=min(config.cross_attention_layers, 1),
        sliding_window=4 if config.sliding_window else 0,
        attention_pattern=_pattern(config.attention_pattern),
        # an encoder context longer than the decoder's stays longer (AlphaCode 1536 / 768)
        max_position=MAX_POSITION // 2
        if config.encoder_max_position > config.max_position
        else MAX_POSITION,
        encoder_max_position=MAX_POSITION if config.encoder_max_position else 0,
        rotary=_rotary(config.rotary),
        encoder_rotary=_rotary(config.encoder_rotary),
        moe=_moe(config.moe),
        mla=_mla(config.mla),
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        decoder_start_token_id=0,
    )
    changes.update(overrides or {})
    return dataclasses.replace(config, **changes).validate()
