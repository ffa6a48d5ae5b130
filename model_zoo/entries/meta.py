"""Meta's surveyed models: OPT-175B, Galactica-120B, LLaMA-65B, LLaMA-2-70B, LLaMA-3.1-405B."""

from __future__ import annotations

from dataclasses import replace

from irgraph.model_zoo.config import (
    UNSIZED,
    Activation,
    Norm,
    Position,
    RopeScaling,
    RotaryConfig,
    ZooEntry,
)
from irgraph.model_zoo.survey_table5 import cite, survey, survey_params

_OPT = survey("OPT (175B)")
_GALACTICA = survey("Galactica (120B)")
_LLAMA = survey("LLaMA (65B)")
_LLAMA2 = survey("LLaMA-2 (70B)")
_LLAMA31 = survey("LLaMA-3.1 (405B)")

# OPT / Galactica (HF model_type "opt"): pre-LayerNorm, learned positions, LM head tied to
# the token embedding.
_OPT_FAMILY = replace(
    UNSIZED,
    position=Position.LEARNED,
    max_position=2048,
    tied_embeddings=True,
    bos_token_id=2,
    eos_token_id=2,
    pad_token_id=1,
)

OPT = ZooEntry(
    name="opt",
    aliases=("opt-175b",),
    config=replace(
        _OPT_FAMILY,
        name="opt",
        vocab_size=50272,
        hidden=12288,
        layers=96,
        heads=96,
        ffn=49152,
        activation=Activation.RELU,
        qkv_bias=True,
        out_bias=True,
        mlp_bias=True,
    ),
    published_params=175_000_000_000,
    survey_params=survey_params(_OPT.size),
    survey=_OPT,
    claims=("causal decoder", "ReLU", "bias"),
    sources={
        **cite(
            "OPT-175B config as released with metaseq / HF OPTConfig (hidden_size 12288, "
            "num_hidden_layers 96, num_attention_heads 96, ffn_dim 49152, vocab_size 50272, "
            "max_position_embeddings 2048, activation_function relu, do_layer_norm_before true, "
            "enable_bias true); Zhang et al. 2022 Table 1 (175B: 96 layers, 96 heads, embedding "
            "size 12288)",
            "hidden",
            "layers",
            "heads",
            "ffn",
            "vocab_size",
            "max_position",
            "activation",
            "norm_placement",
            "qkv_bias",
            "published_params",
        ),
    },
    notes=(
        "Norm, PE and HS are blank in the survey: pre-LayerNorm, learned positions (HF stores "
        "2048 + 2 rows: OPT offsets position ids by 2) and d_model 12288 from the release.",
    ),
)

GALACTICA = ZooEntry(
    name="galactica",
    aliases=("galactica-120b",),
    config=replace(
        _OPT_FAMILY,
        name="galactica",
        vocab_size=50000,
        hidden=10240,
        layers=96,
        heads=80,
        ffn=40960,
        activation=Activation.GELU,
        norm_bias=False,
    ),
    published_params=120_000_000_000,
    survey_params=survey_params(_GALACTICA.size),
    survey=_GALACTICA,
    claims=("causal decoder", "layer norm", "learned positions", "GeLU", "no bias"),
    sources={
        **cite(
            "HF facebook/galactica-120b config.json (model_type opt: hidden_size 10240, "
            "num_hidden_layers 96, num_attention_heads 80, ffn_dim 40960, vocab_size 50000, "
            "max_position_embeddings 2048, activation_function gelu)",
            "hidden",
            "layers",
            "heads",
            "ffn",
            "vocab_size",
            "max_position",
            "activation",
        ),
        **cite(
            "Taylor et al. 2022 (Galactica) model section: 120B = 96 layers, d_model 10240, 80 "
            "heads; GeLU; learned positional embeddings; no biases in dense kernels or layer norms",
            "published_params",
            "position",
            "qkv_bias",
            "norm_bias",
        ),
    },
    notes=("No biases anywhere, norms included, as the paper states (following PaLM).",),
)

# LLaMA family (HF model_type "llama"): pre-RMSNorm, rotate-half RoPE, SwiGLU, no biases,
# untied LM head.
_LLAMA_FAMILY = replace(
    UNSIZED,
    norm=Norm.RMS,
    position=Position.ROTARY,
    activation=Activation.SILU,
    gated_mlp=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
_LLAMA_CLAIMS = ("causal decoder", "pre-RMS norm", "RoPE", "SwiGLU")

LLAMA = ZooEntry(
    name="llama",
    aliases=("llama-65b", "llama-1"),
    config=replace(
        _LLAMA_FAMILY,
        name="llama",
        vocab_size=32000,
        hidden=8192,
        layers=80,
        heads=64,
        ffn=22016,
        max_position=2048,
        norm_eps=1e-5,
        rotary=RotaryConfig(),
    ),
    published_params=65_200_000_000,
    survey_params=survey_params(_LLAMA.size),
    survey=_LLAMA,
    claims=_LLAMA_CLAIMS,
    sources={
        **cite(
            "Meta's released LLaMA-65B params.json (dim 8192, n_layers 80, n_heads 64, "
            "multiple_of 256 -> FFN 22016, norm_eps 1e-5) as converted in HF huggyllama/llama-65b "
            "config.json (vocab_size 32000, max_position_embeddings 2048)",
            "hidden",
            "layers",
            "heads",
            "ffn",
            "vocab_size",
            "max_position",
            "norm_eps",
        ),
        **cite(
            "Touvron et al. 2023 (LLaMA) Sec. 2.2 (pre-norm RMSNorm, SwiGLU with 2/3 4d, RoPE) "
            "and Table 2 (65.2B)",
            "norm",
            "activation",
            "gated_mlp",
            "position",
            "published_params",
        ),
    },
)

LLAMA_2 = ZooEntry(
    name="llama-2",
    aliases=("llama-2-70b", "llama2"),
    config=replace(
        _LLAMA_FAMILY,
        name="llama-2",
        vocab_size=32000,
        hidden=8192,
        layers=80,
        heads=64,
        kv_heads=8,
        ffn=28672,
        max_position=4096,
        norm_eps=1e-5,
        rotary=RotaryConfig(),
    ),
    published_params=70_000_000_000,
    survey_params=survey_params(_LLAMA2.size),
    survey=_LLAMA2,
    claims=(*_LLAMA_CLAIMS, "grouped-query attention"),
    sources={
        **cite(
            "HF meta-llama/Llama-2-70b-hf config.json (hidden_size 8192, num_hidden_layers 80, "
            "num_attention_heads 64, num_key_value_heads 8, intermediate_size 28672, vocab_size "
            "32000, max_position_embeddings 4096, rms_norm_eps 1e-5, rope_theta 10000)",
            "hidden",
            "layers",
            "heads",
            "kv_heads",
            "ffn",
            "vocab_size",
            "max_position",
            "norm_eps",
            "rotary",
        ),
        **cite(
            "Touvron et al. 2023b (Llama 2) Sec. 2 and its model table: GQA for 34B/70B, 4k "
            "context, 70B",
            "published_params",
        ),
    },
    notes=("The survey gives no nL/nH/HS for LLaMA-2; taken from the released 70B config.",),
)

LLAMA_3_1 = ZooEntry(
    name="llama-3.1",
    aliases=("llama-3.1-405b", "llama3.1"),
    config=replace(
        _LLAMA_FAMILY,
        name="llama-3.1",
        vocab_size=128256,
        hidden=16384,
        layers=126,
        heads=128,
        kv_heads=8,
        ffn=53248,
        max_position=131072,
        norm_eps=1e-5,
        rotary=RotaryConfig(
            base=500000.0,
            scaling=RopeScaling.LLAMA3,
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position=8192,
        ),
        bos_token_id=128000,
        eos_token_id=128001,
        pad_token_id=128004,
    ),
    published_params=405_000_000_000,
    survey_params=survey_params(_LLAMA31.size),
    survey=_LLAMA31,
    claims=(*_LLAMA_CLAIMS, "grouped-query attention"),
    sources={
        **cite(
            "HF meta-llama/Llama-3.1-405B config.json (hidden_size 16384, num_hidden_layers 126, "
            "num_attention_heads 128, num_key_value_heads 8, intermediate_size 53248, vocab_size "
            "128256, max_position_embeddings 131072, rope_theta 500000, rope_scaling llama3 "
            "factor 8 low 1 high 4 original 8192)",
            "hidden",
            "layers",
            "heads",
            "kv_heads",
            "ffn",
            "vocab_size",
            "max_position",
            "rotary",
        ),
        **cite(
            "Dubey et al. 2024 (Llama 3) Table 3: 405B = 126 layers, d_model 16384, FFN 53248, "
            "128 heads, 8 KV heads, vocabulary 128K, RoPE base 500000",
            "published_params",
        ),
    },
)

ENTRIES: list[ZooEntry] = [OPT, GALACTICA, LLAMA, LLAMA_2, LLAMA_3_1]
