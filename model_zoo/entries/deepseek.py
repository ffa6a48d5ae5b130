"""DeepSeek LLM 67B (dense, grouped-query), DeepSeek-V2 (MoE with multi-head latent attention)."""

from __future__ import annotations

from dataclasses import replace

from irgraph.model_zoo.config import (
    UNSIZED,
    Activation,
    MlaConfig,
    MoeConfig,
    Norm,
    Position,
    RopeScaling,
    RotaryConfig,
    ZooEntry,
)
from irgraph.model_zoo.survey_table5 import cite, survey, survey_params

_DEEPSEEK = survey("DeepSeek (67B)")
_DEEPSEEK_V2 = survey("DeepSeek-v2 (67B†)")

_DEEPSEEK_FAMILY = replace(
    UNSIZED,
    vocab_size=102400,
    norm=Norm.RMS,
    norm_eps=1e-6,
    position=Position.ROTARY,
    activation=Activation.SILU,
    gated_mlp=True,
    bos_token_id=100000,
    eos_token_id=100001,
    pad_token_id=100001,
)

DEEPSEEK = ZooEntry(
    name="deepseek",
    aliases=("deepseek-67b", "deepseek-llm-67b"),
    config=replace(
        _DEEPSEEK_FAMILY,
        name="deepseek",
        hidden=8192,
        layers=95,
        heads=64,
        kv_heads=8,
        ffn=22016,
        max_position=4096,
        rotary=RotaryConfig(base=10000.0),
    ),
    published_params=67_000_000_000,
    survey_params=survey_params(_DEEPSEEK.size),
    survey=_DEEPSEEK,
    claims=(
        "causal decoder",
        "grouped-query attention",
        "pre-RMS norm",
        "RoPE",
        "SwiGLU",
        "byte-level BPE",
    ),
    sources={
        **cite(
            "HF deepseek-ai/deepseek-llm-67b-base config.json (model_type llama: vocab_size "
            "102400, hidden_size 8192, num_hidden_layers 95, num_attention_heads 64, "
            "num_key_value_heads 8, intermediate_size 22016, max_position_embeddings 4096, "
            "rms_norm_eps 1e-6, rope_theta 10000)",
            "vocab_size",
            "hidden",
            "layers",
            "heads",
            "kv_heads",
            "ffn",
            "max_position",
            "norm_eps",
            "rotary",
        ),
        **cite(
            "DeepSeek-AI 2024 (DeepSeek LLM) Table 2: 67B = 95 layers, d_model 8192, 64 heads, 8 "
            "KV heads",
            "published_params",
        ),
    },
    notes=(
        "KV cache per token (16-bit): 95 layers x 2 (K and V) x 8 KV heads x 128 x 2 bytes = "
        "389,120 bytes.",
    ),
)

DEEPSEEK_V2 = ZooEntry(
    name="deepseek-v2",
    aliases=("deepseek-v2-236b", "deepseekv2"),
    config=replace(
        _DEEPSEEK_FAMILY,
        name="deepseek-v2",
        hidden=5120,
        layers=60,
        heads=128,
        ffn=12288,
        max_position=163840,
        rotary=RotaryConfig(
            base=10000.0,
            interleaved=True,
            scaling=RopeScaling.YARN,
            factor=40.0,
            original_max_position=4096,
            beta_fast=32.0,
            beta_slow=1.0,
            mscale=0.707,
            mscale_all_dim=0.707,
        ),
        mla=MlaConfig(kv_rank=512, q_rank=1536, nope_dim=128, rope_dim=64, v_dim=128),
        moe=MoeConfig(
            num_experts=160,
            top_k=6,
            expert_ffn=1536,
            first_dense=1,
            shared_experts=2,
            normalize=False,
            n_group=8,
            topk_group=3,
            scaling=16.0,
        ),
    ),
    published_params=236_000_000_000,
    published_active=21_000_000_000,
    survey_params=survey_params(_DEEPSEEK_V2.size),
    survey=_DEEPSEEK_V2,
    claims=("MoE decoder", "multi-head latent attention", "pre-RMS norm", "RoPE", "SwiGLU"),
    sources={
        **cite(
            "HF deepseek-ai/DeepSeek-V2 config.json (vocab_size 102400, hidden_size 5120, "
            "num_hidden_layers 60, num_attention_heads 128, intermediate_size 12288, "
            "moe_intermediate_size 1536, n_routed_experts 160, num_experts_per_tok 6, "
            "n_shared_experts 2, first_k_dense_replace 1, topk_method group_limited_greedy, "
            "n_group 8, topk_group 3, routed_scaling_factor 16, norm_topk_prob false, "
            "kv_lora_rank 512, q_lora_rank 1536, qk_nope_head_dim 128, qk_rope_head_dim 64, "
            "v_head_dim 128, rope_scaling yarn factor 40 original 4096 beta_fast 32 beta_slow 1 "
            "mscale 0.707 mscale_all_dim 0.707, max_position_embeddings 163840, rms_norm_eps 1e-6)",
            "vocab_size",
            "hidden",
            "layers",
            "heads",
            "ffn",
            "moe",
            "mla",
            "rotary",
            "max_position",
        ),
        **cite(
            "DeepSeek-AI 2024 (DeepSeek-V2): MLA, DeepSeekMoE; 236B total, 21B activated per "
            "token; KV cache reduced by 93.3% vs DeepSeek 67B",
            "published_params",
            "published_active",
        ),
    },
    notes=(
        "The survey prints 67B for DeepSeek-v2; the paper reports 236B total / 21B activated "
        "parameters (67B is the dense DeepSeek LLM it is compared with).",
        "KV cache per token (16-bit): 60 layers x (512 latent + 64 RoPE key) x 2 bytes = 69,120 "
        "bytes, 82% smaller than DeepSeek 67B's 389,120 at equal precision. The paper's 93.3% "
        "also counts its deployed cache compression (FP8 KV quantisation), which this comparison "
        "does not.",
        "The survey's nH 128 / HS 5120 / nL 60 match the release.",
    ),
)

ENTRIES: list[ZooEntry] = [DEEPSEEK, DEEPSEEK_V2]
