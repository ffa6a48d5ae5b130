"""OpenAI's surveyed models: GPT-3 175B and Codex 12B (a fine-tuned GPT-3 12B)."""

from __future__ import annotations

from dataclasses import replace

from irgraph.model_zoo.config import (
    UNSIZED,
    Activation,
    AttentionKind,
    LayerAttention,
    Position,
    ZooEntry,
)
from irgraph.model_zoo.survey_table5 import cite, survey, survey_params

_GPT3 = survey("GPT-3 (175B)")
_CODEX = survey("Codex (12B)")

# GPT-3's sparse layers: "alternating dense and locally banded sparse attention patterns in the
# layers of the transformer, similar to the Sparse Transformer" (Brown et al. 2020 Sec. 2.1). The
# band width is not published: 128 tokens is assumed, the block the Sparse Transformer used for
# its text model (Child et al. 2019: enwik8 with stride 128), 1/16 of GPT-3's 2048 context.
# Which half is dense is not published either: even layers dense, odd layers banded.
GPT3_BAND = 128
_GPT3_ATTENTION = (LayerAttention(), LayerAttention(AttentionKind.LOCAL, GPT3_BAND))

# GPT-2/GPT-3 block: pre-LayerNorm, learned absolute positions, tanh-GELU MLP of 4·d,
# biases everywhere, LM head tied to the token embedding.
_GPT_FAMILY = replace(
    UNSIZED,
    position=Position.LEARNED,
    max_position=2048,
    activation=Activation.GELU_TANH,
    qkv_bias=True,
    out_bias=True,
    mlp_bias=True,
    tied_embeddings=True,
    bos_token_id=50256,
    eos_token_id=50256,
    pad_token_id=50256,
)

GPT_3 = ZooEntry(
    name="gpt-3",
    approximate=(
        (
            "the banded layers (128 tokens wide, the odd layers): GPT-3 publishes neither band "
            "width nor order; assumed from the Sparse Transformer"
        ),
    ),
    aliases=("gpt3", "gpt-3-175b", "davinci"),
    config=replace(
        _GPT_FAMILY,
        name="gpt-3",
        vocab_size=50257,
        hidden=12288,
        layers=96,
        heads=96,
        head_dim=128,
        ffn=4 * 12288,
        attention_pattern=_GPT3_ATTENTION,
    ),
    published_params=175_000_000_000,
    survey_params=survey_params(_GPT3.size),
    survey=_GPT3,
    claims=(
        "causal decoder",
        "dense and locally banded sparse attention alternating (Sparse Transformer)",
        "layer norm",
        "learned positions",
        "GeLU",
        "bias",
    ),
    sources={
        **cite(
            "Brown et al. 2020 Table 2.1 (GPT-3 175B: n_layers 96, d_model 12288, n_heads 96, "
            "d_head 128, n_ctx 2048, 175.0B params); d_ff = 4 d_model (Sec. 2.1, as GPT-2)",
            "layers",
            "hidden",
            "heads",
            "head_dim",
            "max_position",
            "ffn",
            "published_params",
        ),
        **cite(
            "Brown et al. 2020 Sec. 2.1: same model as GPT-2 (pre-LN, learned positions, GELU) "
            "and its 50257-token byte-level BPE",
            "vocab_size",
            "norm_placement",
            "position",
            "activation",
        ),
        **cite(
            "Brown et al. 2020 Sec. 2.1: alternating dense and locally banded sparse layers "
            "(Sparse Transformer). Assumed: a 128-token band (Child et al. 2019's text stride) in "
            "the odd layers",
            "attention_pattern",
        ),
    },
    notes=(
        "GPT-3 alternates dense and locally banded sparse attention layers (Sec. 2.1); the band "
        "width and which layers are banded are not published. Assumed: even layers dense, odd "
        "layers see the 128 most recent tokens (the Sparse Transformer's stride for text, Child "
        "et al. 2019). Parameters are unaffected; the KV cache still keeps every token.",
    ),
)

CODEX = ZooEntry(
    name="codex",
    approximate=(
        (
            "the banded layers (128 tokens wide, the odd layers), as GPT-3's: neither band "
            "width nor order is published"
        ),
    ),
    aliases=("codex-12b",),
    config=replace(
        _GPT_FAMILY,
        name="codex",
        vocab_size=50281,
        hidden=5140,
        layers=40,
        heads=40,
        head_dim=128,
        ffn=4 * 5140,
        attention_pattern=_GPT3_ATTENTION,
    ),
    published_params=12_000_000_000,
    survey_params=survey_params(_CODEX.size),
    survey=_CODEX,
    claims=(
        "causal decoder",
        "GPT-3 fine-tuned on code",
        "pre-layer norm",
        "learned positions",
        "GeLU",
    ),
    sources={
        **cite(
            "Brown et al. 2020 Table 2.1, GPT-3 13B (n_layers 40, d_model 5140, n_heads 40, "
            "d_head 128), the model Codex-12B fine-tunes (Chen et al. 2021 Sec. 3)",
            "layers",
            "hidden",
            "heads",
            "head_dim",
            "ffn",
            "max_position",
        ),
        **cite(
            "Chen et al. 2021 (Codex) Sec. 3: GPT-3 text tokenizer plus tokens for runs of "
            "whitespace (OpenAI tiktoken p50k_base: 50281 tokens)",
            "vocab_size",
        ),
        **cite("Chen et al. 2021 (Codex) abstract/Sec. 3: 12B parameters", "published_params"),
        **cite(
            "Brown et al. 2020 Sec. 2.1: every GPT-3 size alternates dense and locally banded "
            "sparse layers; fine-tuning keeps the architecture. The band is GPT-3's assumed one",
            "attention_pattern",
        ),
    },
    notes=(
        "The survey's nL 96 / nH 96 / HS 12288 are GPT-3 175B's dims; Codex-12B is built on "
        "GPT-3's 13B configuration (40 layers, d_model 5140, 40 heads of 128; heads*head_dim = "
        "5120 != 5140).",
        "GPT-3 13B counts 12.9B with the whitespace-extended vocabulary; the Codex paper rounds "
        "to 12B.",
        "Attention alternates dense and locally banded layers as in every GPT-3 size (Brown et "
        "al. 2020 Sec. 2.1), with GPT-3's assumed 128-token band in the odd layers.",
    ),
)

ENTRIES: list[ZooEntry] = [GPT_3, CODEX]
