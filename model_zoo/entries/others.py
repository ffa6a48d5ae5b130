"""Dense decoders and encoder-decoders from other labs: Jurassic-1 (AI21), HyperCLOVA (Naver),
MT-NLG (Microsoft/NVIDIA), AlexaTM (Amazon), Nemotron-4 (NVIDIA)."""

from __future__ import annotations

from dataclasses import replace

from irgraph.model_zoo.config import (
    UNSIZED,
    Activation,
    Arch,
    ModelConfig,
    Position,
    RotaryConfig,
    ZooEntry,
)
from irgraph.model_zoo.survey_table5 import cite, survey, survey_params

_JURASSIC = survey("Jurassic-1 (178B)")
_HYPERCLOVA = survey("HyperCLOVA (82B)")
_MTNLG = survey("MT-NLG (530B)")
_ALEXATM = survey("AlexaTM (20B)")
_NEMOTRON = survey("Nemotron-4 (340B)")

# GPT-3-style block: pre-LayerNorm, learned positions, GELU MLP of 4·d, biases, tied head.
_GPT3_STYLE = replace(
    UNSIZED,
    position=Position.LEARNED,
    max_position=2048,
    activation=Activation.GELU,
    qkv_bias=True,
    out_bias=True,
    mlp_bias=True,
    tied_embeddings=True,
)

JURASSIC_1 = ZooEntry(
    name="jurassic-1",
    aliases=("j1-jumbo", "jurassic-1-jumbo"),
    config=replace(
        _GPT3_STYLE,
        name="jurassic-1",
        vocab_size=256000,
        hidden=13824,
        layers=76,
        heads=96,
        head_dim=144,
        ffn=4 * 13824,
    ),
    published_params=178_000_000_000,
    survey_params=survey_params(_JURASSIC.size),
    survey=_JURASSIC,
    claims=(
        "causal decoder",
        "wider and shallower than GPT-3",
        "256k SentencePiece vocabulary",
        "pre-layer norm",
        "learned positions",
        "GeLU",
        "bias",
    ),
    sources={
        **cite(
            "Lieber et al. 2021 (Jurassic-1 white paper) model table: J1-Jumbo = 178B, 76 layers, "
            "d_model 13824, 96 heads of 144; 256K vocabulary; 2048-token context",
            "layers",
            "hidden",
            "heads",
            "head_dim",
            "vocab_size",
            "max_position",
            "published_params",
        ),
        **cite(
            "Jurassic-1 white paper: GPT-3 architecture otherwise (pre-LN, learned positions, "
            "GELU, 4d FFN); tied embeddings our choice",
            "ffn",
            "norm_placement",
            "position",
            "activation",
            "tied_embeddings",
        ),
    },
)

HYPERCLOVA = ZooEntry(
    name="hyperclova",
    aliases=("hyperclova-82b",),
    config=replace(
        _GPT3_STYLE,
        name="hyperclova",
        vocab_size=50000,
        hidden=10240,
        layers=64,
        heads=80,
        ffn=4 * 10240,
    ),
    published_params=82_000_000_000,
    survey_params=survey_params(_HYPERCLOVA.size),
    survey=_HYPERCLOVA,
    claims=(
        "causal decoder",
        "GPT-3 architecture (Korean)",
        "dense+sparse attention",
        "pre-layer norm",
        "learned positions",
        "GeLU",
        "morpheme-aware BPE",
    ),
    sources={
        **cite(
            "Kim et al. 2021 (HyperCLOVA) model-size table: 82B = 64 layers, d_model 10240, 80 "
            "heads; 2048 tokens",
            "layers",
            "hidden",
            "heads",
            "max_position",
            "published_params",
        ),
        **cite(
            "HyperCLOVA: GPT-3 architecture (pre-LN, learned positions, GELU, 4d FFN)",
            "ffn",
            "norm_placement",
            "position",
            "activation",
        ),
        **cite(
            "Not published: vocabulary size (morpheme-aware byte-level BPE); 50,000 is our choice "
            "(0.6% of the count)",
            "vocab_size",
        ),
    },
    notes=(
        "The survey's 'dense+sparse attention' comes from GPT-3's alternating locally banded "
        "sparse layers. Kim et al. 2021 describe HyperCLOVA only as a Korean variant of GPT-3 "
        "trained with Megatron-LM, whose attention is dense, and name no sparse layers or band "
        "width: the entry is dense in every layer (no parameter change).",
        "Vocabulary size is not published; 50,000 is our choice.",
    ),
)

MT_NLG = ZooEntry(
    name="mt-nlg",
    aliases=("megatron-turing-nlg", "mt-nlg-530b"),
    config=replace(
        _GPT3_STYLE,
        name="mt-nlg",
        vocab_size=50257,
        hidden=20480,
        layers=105,
        heads=128,
        ffn=4 * 20480,
        activation=Activation.GELU_TANH,
    ),
    published_params=530_000_000_000,
    survey_params=survey_params(_MTNLG.size),
    survey=_MTNLG,
    claims=(
        "causal decoder",
        "GPT-2 architecture",
        "pre-layer norm",
        "learned positions",
        "GeLU",
        "bias",
    ),
    sources={
        **cite(
            "Smith et al. 2022 (MT-NLG) model configuration section: 105 layers, hidden 20480, "
            "128 heads, sequence 2048, GPT-2 BPE vocabulary (50,257), 530B",
            "layers",
            "hidden",
            "heads",
            "max_position",
            "vocab_size",
            "published_params",
        ),
        **cite(
            "MT-NLG: Megatron GPT-2 architecture (pre-LN, learned positions, tanh-GELU 4d FFN, "
            "biases, tied embeddings)",
            "ffn",
            "norm_placement",
            "position",
            "activation",
            "tied_embeddings",
        ),
    },
)

ALEXATM = ZooEntry(
    name="alexatm",
    aliases=("alexatm-20b",),
    config=replace(
        _GPT3_STYLE,
        name="alexatm",
        arch=Arch.ENCODER_DECODER,
        vocab_size=150000,
        hidden=4096,
        layers=32,
        encoder_layers=46,
        heads=32,
        ffn=16384,
        max_position=1024,
    ),
    published_params=20_000_000_000,
    survey_params=survey_params(_ALEXATM.size),
    survey=_ALEXATM,
    claims=(
        "encoder-decoder",
        "denoising + causal LM",
        "pre-layer norm",
        "learned positions",
        "GeLU",
        "bias",
    ),
    sources={
        **cite(
            "Soltan et al. 2022 (AlexaTM 20B) Sec. 2 / model table: 46 encoder + 32 decoder "
            "layers, 32 heads, d_model 4096, d_ff 16384, 150K SentencePiece vocabulary, "
            "1024-token inputs; 20B",
            "encoder_layers",
            "layers",
            "heads",
            "hidden",
            "ffn",
            "vocab_size",
            "max_position",
            "published_params",
        ),
        **cite(
            "AlexaTM: pre-LayerNorm (survey 'pre-layer'), learned positions, GELU, biases; tied "
            "embeddings our choice",
            "norm_placement",
            "position",
            "activation",
            "tied_embeddings",
        ),
    },
    notes=(
        "Survey nL 78 = 46 encoder + 32 decoder layers.",
        "Counting the published dims (46 + 32 layers of width 4096, d_ff 16384, 150k tied "
        "vocabulary) gives 18.5B, 8% under the 20B of the title; the paper's table does not list "
        "what else is counted.",
    ),
)

NEMOTRON_4 = ZooEntry(
    name="nemotron-4",
    aliases=("nemotron-4-340b", "nemotron"),
    config=ModelConfig(
        name="nemotron-4",
        vocab_size=256000,
        hidden=18432,
        layers=96,
        heads=96,
        kv_heads=8,
        ffn=73728,
        norm_weight_offset=1.0,
        position=Position.ROTARY,
        rotary=RotaryConfig(fraction=0.5, base=10000.0),
        max_position=4096,
        activation=Activation.RELU2,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    ),
    published_params=340_000_000_000,
    survey_params=survey_params(_NEMOTRON.size),
    survey=_NEMOTRON,
    claims=("causal decoder", "RoPE", "ReLU (squared)", "no bias", "256k SentencePiece"),
    sources={
        **cite(
            "NVIDIA 2024 (Nemotron-4 340B Technical Report) Table 1: 96 layers, hidden 18432, 96 "
            "heads, 8 KV heads, sequence 4096, vocabulary 256,000; 340B",
            "layers",
            "hidden",
            "heads",
            "kv_heads",
            "max_position",
            "vocab_size",
            "published_params",
        ),
        **cite(
            "Nemotron-4 15B report (architecture shared by 340B) and the released NeMo "
            "model_config.yaml / HF nemotron config: ffn_hidden_size 73728, squared-ReLU, "
            "layernorm1p, rotary_percentage 0.5, no bias, untied embeddings",
            "ffn",
            "activation",
            "norm_weight_offset",
            "rotary",
            "qkv_bias",
            "tied_embeddings",
        ),
    },
    notes=(
        "The survey's 'standard' attention: Nemotron-4 uses grouped-query attention (8 KV heads).",
        "The survey's 'ReLU' is squared ReLU; layernorm1p stores LayerNorm weights minus 1 "
        "(norm_weight_offset 1).",
    ),
)

ENTRIES: list[ZooEntry] = [JURASSIC_1, HYPERCLOVA, MT_NLG, ALEXATM, NEMOTRON_4]
