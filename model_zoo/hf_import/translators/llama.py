"""LLaMA 1/2/3 (llama3 rope scaling; DeepSeek-67B too), Mistral (sliding window), Mixtral (MoE)."""

from __future__ import annotations

from dataclasses import dataclass

from irgraph.model_zoo.config import ModelConfig, MoeConfig, Norm, Position
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.rope import rotary_from_hf
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids

MODEL_TYPES = ("llama", "mistral", "mixtral")


@dataclass(frozen=True)
class _Defaults:
    """transformers' defaults where the three configs differ (a 4.x config.json may omit them)."""

    max_position: int
    eps: float
    theta: float
    window: int | None


_DEFAULTS = {
    "llama": _Defaults(max_position=2048, eps=1e-6, theta=10000.0, window=None),
    "mistral": _Defaults(max_position=4096 * 32, eps=1e-6, theta=10000.0, window=4096),
    "mixtral": _Defaults(max_position=4096 * 32, eps=1e-5, theta=1e6, window=None),
}


def translate(c: HFConfig) -> Plan:
    model_type = c.get("model_type")
    d = _DEFAULTS[model_type]
    hidden, heads = c.int("hidden_size"), c.int("num_attention_heads", minimum=1)
    head_dim = c.int("head_dim", hidden // heads)
    max_position = c.int("max_position_embeddings", d.max_position)
    ffn = c.int("intermediate_size")
    moe = None
    if model_type == "mixtral":  # every layer routed; Mixtral renormalises the kept top-k weights
        moe = MoeConfig(
            num_experts=c.int("num_local_experts"),
            top_k=c.int("num_experts_per_tok"),
            expert_ffn=ffn,
            normalize=True,
        )
    bias = c.bool("attention_bias", False) if model_type == "llama" else False
    config = ModelConfig(
        name=model_type,
        vocab_size=c.int("vocab_size"),
        hidden=hidden,
        layers=c.int("num_hidden_layers"),
        heads=heads,
        kv_heads=c.int("num_key_value_heads", heads),
        head_dim=head_dim,
        ffn=ffn,
        norm=Norm.RMS,
        norm_eps=c.float("rms_norm_eps", d.eps),
        norm_bias=False,
        position=Position.ROTARY,
        max_position=max_position,
        rotary=rotary_from_hf(
            c, head_dim=head_dim, max_position=max_position, default_theta=d.theta
        ),
        activation=c.activation("hidden_act", "silu"),
        gated_mlp=True,
        qkv_bias=bias,
        out_bias=bias,
        mlp_bias=c.bool("mlp_bias", False) if model_type == "llama" else False,
        tied_embeddings=c.bool("tie_word_embeddings", False),
        sliding_window=(c.raw("sliding_window", d.window) or 0) if model_type != "llama" else 0,
        moe=moe,
    )
    return plan(c, config, token_ids(c))
