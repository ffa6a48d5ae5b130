"""DeepMind's surveyed models: Gopher, Chinchilla, Sparrow (on Chinchilla) and AlphaCode."""

from __future__ import annotations

from dataclasses import replace

from irgraph.model_zoo.config import (
    UNSIZED,
    Activation,
    Arch,
    ModelConfig,
    Norm,
    Position,
    ZooEntry,
)
from irgraph.model_zoo.survey_table5 import cite, survey, survey_params

_GOPHER = survey("Gopher (280B)")
_CHINCHILLA = survey("Chinchilla (70B)")
_SPARROW = survey("Sparrow (70B)")
_ALPHACODE = survey("AlphaCode (41B)")

# Gopher family (Rae et al. 2021 Sec. 3): GPT-2-like with RMSNorm instead of LayerNorm and
# Transformer-XL relative position encodings; 32k SentencePiece; MLP 4·d_model.
_GOPHER_FAMILY = replace(
    UNSIZED,
    vocab_size=32000,
    head_dim=128,
    norm=Norm.RMS,
    position=Position.TRANSFORMER_XL,
    max_position=2048,
    activation=Activation.GELU,
    qkv_bias=True,
    out_bias=True,
    mlp_bias=True,
)
_XL_NOTE = (
    "Transformer-XL relative encoding (Dai et al. 2019, Sec. 3.3), as Gopher Sec. 3 says: "
    "sinusoids of the distance projected by a per-layer d_model x d_model matrix W_r, with "
    "learned biases u and v. W_r is 80 x d_model^2 of the count (21.5B for Gopher, 5.4B for "
    "Chinchilla): without it the count was ~7.5% short. "
    + "u and v are per layer, as the released code builds them with `untie_r` (kimiyoung/"
    "transformer-xl, mem_transformer.py; sharing them would save 2 x heads x head_dim per layer). "
    "Segment recurrence memory is a training-time feature (the previous segment's hidden states, "
    "without gradient): it is not modelled; at inference the KV cache plays its part."
)
_GOPHER_CHOICES = (
    "Biases follow the survey ('yes'); the papers do not say. Untied input/output embeddings: "
    "not stated in the papers, our choice (0.2% of the count)."
)

GOPHER = ZooEntry(
    name="gopher",
    aliases=("gopher-280b",),
    config=replace(
        _GOPHER_FAMILY, name="gopher", hidden=16384, layers=80, heads=128, ffn=4 * 16384
    ),
    published_params=280_000_000_000,
    survey_params=survey_params(_GOPHER.size),
    survey=_GOPHER,
    claims=("causal decoder", "pre-RMS norm", "relative positions", "GeLU", "bias"),
    sources={
        **cite(
            "Rae et al. 2021 (Gopher) Table 1: 280B = 80 layers, 128 heads, key/value size 128, "
            "d_model 16384",
            "layers",
            "heads",
            "head_dim",
            "hidden",
            "published_params",
        ),
        **cite(
            "Gopher Sec. 3 (model): RMSNorm, relative positional encoding (Transformer-XL), "
            "32,000-token SentencePiece, 2048-token context; d_ff = 4 d_model",
            "norm",
            "position",
            "vocab_size",
            "max_position",
            "ffn",
        ),
    },
    notes=(_XL_NOTE, _GOPHER_CHOICES),
)

_CHINCHILLA_CONFIG = replace(
    _GOPHER_FAMILY, name="chinchilla", hidden=8192, layers=80, heads=64, ffn=4 * 8192
)
_CHINCHILLA_SOURCES = {
    **cite(
        "Hoffmann et al. 2022 (Chinchilla) Table 4: 70B = 80 layers, 64 heads, key/value size 128, "
        "d_model 8192",
        "layers",
        "heads",
        "head_dim",
        "hidden",
        "published_params",
    ),
    **cite(
        "Chinchilla Sec. 4: same architecture as Gopher (RMSNorm, relative positions, 32k "
        "SentencePiece; d_ff = 4 d_model)",
        "norm",
        "position",
        "vocab_size",
        "max_position",
        "ffn",
    ),
}

CHINCHILLA = ZooEntry(
    name="chinchilla",
    aliases=("chinchilla-70b",),
    config=_CHINCHILLA_CONFIG,
    published_params=70_000_000_000,
    survey_params=survey_params(_CHINCHILLA.size),
    survey=_CHINCHILLA,
    claims=(
        "causal decoder",
        "Gopher architecture",
        "pre-RMS norm",
        "relative positions",
        "GeLU",
        "bias",
    ),
    sources=_CHINCHILLA_SOURCES,
    notes=(
        _XL_NOTE,
        _GOPHER_CHOICES,
        "The survey's tokenizer 'SentencePiece-NFKC' is kept verbatim; the paper says Chinchilla's "
        "SentencePiece tokenizer does *not* apply NFKC normalisation.",
    ),
)

SPARROW = ZooEntry(
    name="sparrow",
    aliases=("sparrow-70b",),
    config=_CHINCHILLA_CONFIG.replace(name="sparrow"),
    published_params=70_000_000_000,
    survey_params=survey_params(_SPARROW.size),
    survey=_SPARROW,
    claims=(
        "causal decoder",
        "preference and rule reward models",
        "pre-RMS norm",
        "relative positions",
        "GeLU",
    ),
    sources={
        **_CHINCHILLA_SOURCES,
        **cite(
            "Glaese et al. 2022 (Sparrow): policy and reward models are all initialised from "
            "Chinchilla 70B",
            "all",
        ),
    },
    notes=(
        "The survey's nL '16' (row reads '16 16 4 8192' in the source) is not Sparrow's depth: "
        "Sparrow is Chinchilla 70B with its 80 layers. 16 is the number of top layers Sparrow "
        "fine-tunes; the lower 64 are frozen and shared between the policy and the reward models "
        "(Glaese et al. 2022). The architecture uses 80.",
        _XL_NOTE,
        "The reward models put a scalar head on this trunk; the zoo builds the language-model "
        "head.",
    ),
)

ALPHACODE = ZooEntry(
    name="alphacode",
    aliases=("alphacode-41b",),
    config=ModelConfig(
        name="alphacode",
        arch=Arch.ENCODER_DECODER,
        vocab_size=8000,
        hidden=6144,
        encoder_layers=8,
        layers=56,
        heads=48,
        kv_heads=16,
        head_dim=128,
        ffn=6 * 6144,
        norm=Norm.LAYER,
        position=Position.LEARNED,
        max_position=768,
        encoder_max_position=1536,
        activation=Activation.GELU,
        tied_embeddings=True,
    ),
    published_params=41_100_000_000,
    survey_params=survey_params(_ALPHACODE.size),
    survey=_ALPHACODE,
    claims=("encoder-decoder", "multi-query", "shallow encoder, deep decoder", "8k SentencePiece"),
    sources={
        **cite(
            "Li et al. 2022 (AlphaCode) Table 3, AlphaCode 41B: d_model 6144, 48 query heads, 16 "
            "KV heads, 8 encoder and 56 decoder layers, 41.1B params; head size 128",
            "hidden",
            "heads",
            "kv_heads",
            "head_dim",
            "encoder_layers",
            "layers",
            "published_params",
        ),
        **cite(
            "AlphaCode model section: 8,000-token SentencePiece; encoder input 1536 tokens, "
            "decoder 768",
            "vocab_size",
            "max_position",
            "encoder_max_position",
        ),
        **cite(
            "Derived, not stated: d_ff = 6 d_model is the width at which Table 3's totals come out "
            "(41.1B here, 284M for the smallest model)",
            "ffn",
        ),
        **cite(
            "Not published: pre-LayerNorm, GELU, learned absolute positions, tied embeddings (our "
            "choice)",
            "norm",
            "position",
            "activation",
            "tied_embeddings",
        ),
    },
    notes=(
        "Survey nL 64 = 8 encoder + 56 decoder layers; its nH 128 is the head size (41B has 48 "
        "query heads).",
        "The survey says multi-query; the smaller AlphaCode models use 1 KV head, the 41B model "
        "16 shared KV heads (grouped-query in today's terms).",
        "Norm, position encoding and activation are not published (survey '—'): pre-LayerNorm, "
        "learned positions and GELU are our choices.",
    ),
)

ENTRIES: list[ZooEntry] = [GOPHER, CHINCHILLA, SPARROW, ALPHACODE]
