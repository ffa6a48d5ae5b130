"""Tiny twins: the same architecture at dims that run in the interpreter in milliseconds.

Every structural feature survives: the kind of attention (MQA stays one KV head,
GQA keeps fewer KV heads than query heads), encoder-decoder, prefix-LM, MoE
routing (every-other-layer and dense-first layouts still appear within two
layers), latent attention, the query layer, DeepNorm, sandwich norms, sliding
windows and rotary scalings (with a small original context so scaling engages
at test lengths), a dense MLP as wide as the model (Arctic's residual MLP).
Only sizes shrink; an entry's `tiny_overrides` win.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from irgraph.model_zoo.config import MlaConfig, ModelConfig, MoeConfig, RotaryConfig

VOCAB, HIDDEN, HEADS, HEAD_DIM, FFN, LAYERS, MAX_POSITION = 256, 64, 4, 16, 128, 2, 128


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
    return dataclasses.replace(
        moe,
        num_experts=4,
        top_k=min(moe.top_k, 2),
        expert_ffn=32,
        first_dense=min(moe.first_dense, 1),
        every=min(moe.every, LAYERS),
        shared_experts=min(moe.shared_experts, 1),
        n_group=2 if moe.n_group > 1 else 1,
        topk_group=1,
    )


def _mla(mla: MlaConfig | None) -> MlaConfig | None:
    if mla is None:
        return None
    return MlaConfig(kv_rank=32, q_rank=48 if mla.q_rank else 0, nope_dim=16, rope_dim=8, v_dim=16)


def tiny_config(config: ModelConfig, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The tiny twin of a published config."""
    enc_narrow = bool(config.encoder_hidden and config.encoder_hidden != config.hidden)
    changes: dict[str, Any] = dict(
        name=f"{config.name}-tiny",
        vocab_size=VOCAB,
        hidden=HIDDEN,
        heads=HEADS,
        head_dim=HEAD_DIM,
        kv_heads=_kv_heads(config),
        ffn=HIDDEN if config.ffn == config.hidden else FFN,
        layers=LAYERS,
        max_position=MAX_POSITION,
        encoder_layers=LAYERS if config.encoder_layers else 0,
        encoder_hidden=32 if enc_narrow else 0,
        encoder_heads=2 if enc_narrow else 0,
        encoder_ffn=64 if enc_narrow else 0,
        cross_attention_layers=min(config.cross_attention_layers, 1),
        sliding_window=4 if config.sliding_window else 0,
        rotary=_rotary(config.rotary),
        moe=_moe(config.moe),
        mla=_mla(config.mla),
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        decoder_start_token_id=0,
    )
    changes.update(overrides or {})
    return dataclasses.replace(config, **changes).validate()
