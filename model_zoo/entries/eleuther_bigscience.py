"""GPT-NeoX-20B (EleutherAI) and the BLOOM family: BLOOM-176B, XuanYuan 2.0, BloombergGPT."""

from __future__ import annotations

from irgraph.model_zoo.config import (
    Activation,
    Block,
    ModelConfig,
    Position,
    RotaryConfig,
    ZooEntry,
)
from irgraph.model_zoo.survey_table5 import cite, survey, survey_params

_NEOX = survey("GPT-NeoX-20B")
_BLOOM = survey("BLOOM (176B)")
_XUANYUAN = survey("Xuan Yuan 2.0 (176B)")
_BLOOMBERG = survey("BloombergGPT (50B)")

GPT_NEOX_20B = ZooEntry(
    name="gpt-neox-20b",
    aliases=("gpt-neox", "neox-20b"),
    config=ModelConfig(
        name="gpt-neox-20b",
        vocab_size=50432,
        hidden=6144,
        layers=44,
        heads=64,
        ffn=24576,
        block=Block.PARALLEL_TWO_NORMS,
        position=Position.ROTARY,
        rotary=RotaryConfig(fraction=0.25, base=10000.0),
        max_position=2048,
        activation=Activation.GELU_TANH,
        qkv_bias=True,
        out_bias=True,
        mlp_bias=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    ),
    published_params=20_554_567_680,
    survey_params=survey_params(_NEOX.size),
    survey=_NEOX,
    claims=(
        "causal decoder",
        "parallel attention",
        "rotary",
        "rotary on 25% of head dims",
        "layer norm",
        "GeLU",
        "bias",
    ),
    sources={
        **cite(
            "HF EleutherAI/gpt-neox-20b config.json (vocab_size 50432, hidden_size 6144, "
            "num_hidden_layers 44, num_attention_heads 64, intermediate_size 24576, rotary_pct "
            "0.25, rotary_emb_base 10000, max_position_embeddings 2048, use_parallel_residual "
            "true, hidden_act gelu_fast, tie_word_embeddings false)",
            "vocab_size",
            "hidden",
            "layers",
            "heads",
            "ffn",
            "rotary",
            "max_position",
            "block",
            "activation",
            "tied_embeddings",
        ),
        **cite(
            "Black et al. 2022 (GPT-NeoX-20B) Table 1: 20,554,567,680 parameters",
            "published_params",
        ),
    },
    notes=(
        "Parallel block with two norms: x + Attn(LN1(x)) + FF(LN2(x)); the survey's Eq. 4 writes "
        "one LN for both, the released model has two (input_layernorm, post_attention_layernorm).",
        "gelu_fast is the tanh approximation of GELU.",
    ),
)

_BLOOM_176B = ModelConfig(
    name="bloom",
    vocab_size=250880,
    hidden=14336,
    layers=70,
    heads=112,
    ffn=4 * 14336,
    embedding_norm=True,
    position=Position.ALIBI,
    max_position=2048,
    activation=Activation.GELU_TANH,
    qkv_bias=True,
    out_bias=True,
    mlp_bias=True,
    tied_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=3,
)
_BLOOM_SOURCES = {
    **cite(
        "HF bigscience/bloom config.json (vocab_size 250880, hidden_size 14336, n_layer 70, "
        "n_head 112, layer_norm_epsilon 1e-5; BloomModel: word_embeddings_layernorm, ALiBi, 4h "
        "MLP with bloom_gelu (tanh approximation), biases, tied LM head)",
        "vocab_size",
        "hidden",
        "layers",
        "heads",
        "ffn",
        "embedding_norm",
        "position",
        "activation",
        "tied_embeddings",
    ),
    **cite(
        "BigScience 2022 (BLOOM) Table 3: 176B = 70 layers, 112 heads, hidden 14336, sequence "
        "2048; 176,247M parameters",
        "max_position",
        "published_params",
    ),
}

BLOOM = ZooEntry(
    name="bloom",
    aliases=("bloom-176b",),
    config=_BLOOM_176B,
    published_params=176_247_271_424,
    survey_params=survey_params(_BLOOM.size),
    survey=_BLOOM,
    claims=("causal decoder", "ALiBi", "embedding layer norm", "layer norm", "GeLU", "bias"),
    sources=_BLOOM_SOURCES,
)

XUANYUAN_2 = ZooEntry(
    name="xuanyuan-2.0",
    aliases=("xuanyuan", "xuanyuan2", "xuan-yuan-2.0"),
    config=_BLOOM_176B.replace(name="xuanyuan-2.0"),
    published_params=176_000_000_000,
    survey_params=survey_params(_XUANYUAN.size),
    survey=_XUANYUAN,
    claims=("causal decoder", "BLOOM-176B architecture", "ALiBi", "layer norm", "GeLU", "bias"),
    sources={
        **_BLOOM_SOURCES,
        **cite(
            "Zhang et al. 2023 (XuanYuan 2.0): built on BLOOM-176B, same architecture; 176B",
            "all",
            "published_params",
        ),
    },
    notes=("The survey's attention 'self' is ordinary causal self-attention, as in BLOOM.",),
)

BLOOMBERGGPT = ZooEntry(
    name="bloomberggpt",
    aliases=("bloomberg-gpt", "bloomberggpt-50b"),
    config=_BLOOM_176B.replace(
        name="bloomberggpt",
        vocab_size=131072,
        hidden=7680,
        layers=70,
        heads=40,
        ffn=4 * 7680,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    ),
    published_params=50_600_000_000,
    survey_params=survey_params(_BLOOMBERG.size),
    survey=_BLOOMBERG,
    claims=(
        "causal decoder",
        "non-causal decoder",
        "BLOOM-style",
        "ALiBi",
        "layer norm",
        "GeLU",
        "bias",
    ),
    sources={
        **cite(
            "Wu et al. 2023 (BloombergGPT) Sec. 2.3 (model configuration): 70 layers, 40 heads, "
            "hidden 7680, vocabulary 2^17 = 131,072 (Unigram), 50.6B parameters, context 2048",
            "layers",
            "heads",
            "hidden",
            "vocab_size",
            "published_params",
            "max_position",
        ),
        **cite(
            "BloombergGPT Sec. 2.3: BLOOM's architecture: ALiBi, an extra LayerNorm after the "
            "token embedding, GELU MLP of 4 d, tied input/output embeddings",
            "position",
            "embedding_norm",
            "ffn",
            "activation",
            "tied_embeddings",
        ),
    },
    notes=(
        "Special-token ids are our choice (the tokenizer is not released).",
        "The survey's prose calls BloombergGPT a non-causal decoder; its Table 5 row says "
        "causal-dec, and the paper builds 'a decoder-only causal language model based on BLOOM' "
        "(Wu et al. 2023, Sec. 3.1), so the entry is a causal decoder.",
    ),
)

ENTRIES: list[ZooEntry] = [GPT_NEOX_20B, BLOOM, XUANYUAN_2, BLOOMBERGGPT]
