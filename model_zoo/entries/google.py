"""Google's surveyed models: T5, mT5, UL2, LaMDA, GLaM, PaLM, U-PaLM, PaLM-2.

Released checkpoints (T5-11B, mT5-XXL, UL2) take their dims from the Hugging Face
config.json; the closed models from their papers' tables.
"""

from __future__ import annotations

from dataclasses import replace

from irgraph.model_zoo.config import (
    UNSIZED,
    Activation,
    Arch,
    Block,
    ModelConfig,
    MoeConfig,
    Norm,
    Position,
    RotaryConfig,
    ZooEntry,
)
from irgraph.model_zoo.survey_table5 import cite, survey, survey_params
from irgraph.model_zoo.tiny import HIDDEN as TINY_HIDDEN

_T5 = survey("T5 (11B)")
_MT5 = survey("mT5 (13B)")
_UL2 = survey("UL2 (20B)")
_LAMDA = survey("LaMDA (137B)")
_GLAM = survey("GLaM (1.2T)")
_PALM = survey("PaLM (540B)")
_UPALM = survey("U-PaLM (540B)")
_PALM2 = survey("PaLM-2")

# T5 v1.0 and its descendants (T5.1.1, mT5, UL2): RMS norm without bias before each
# sublayer, no linear biases, no 1/sqrt(d) attention scaling (folded into the init),
# 32 relative-position buckets up to distance 128 in the first layer of each stack.
_T5_FAMILY = replace(
    UNSIZED,
    arch=Arch.ENCODER_DECODER,
    norm=Norm.RMS,
    norm_eps=1e-6,
    position=Position.RELATIVE,
    relative_buckets=32,
    relative_max_distance=128,
    max_position=512,
    attn_scale=1.0,
    decoder_start_token_id=0,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=0,
)

T5 = ZooEntry(
    name="t5",
    aliases=("t5-11b",),
    config=replace(
        _T5_FAMILY,
        name="t5",
        vocab_size=32128,
        hidden=1024,
        layers=24,
        encoder_layers=24,
        heads=128,
        head_dim=128,
        ffn=65536,
        activation=Activation.RELU,
        tied_embeddings=True,
        logit_scale=1024
        ** -0.5,  # tied T5 rescales the decoder output by d_model^-0.5 before the LM head
    ),
    published_params=11_000_000_000,
    survey_params=survey_params(_T5.size),
    survey=_T5,
    claims=(
        "encoder-decoder",
        "span corruption",
        "pre-RMS norm",
        "relative positions",
        "ReLU",
        "no bias",
    ),
    sources={
        **cite(
            "HF google/t5-11b config.json (vocab_size 32128, d_model 1024, num_layers 24, "
            "num_decoder_layers 24, num_heads 128, d_kv 128, d_ff 65536, "
            "relative_attention_num_buckets 32, feed_forward_proj relu, tied word embeddings); "
            "Raffel et al. 2020 Sec. 3.7",
            "vocab_size",
            "hidden",
            "layers",
            "encoder_layers",
            "heads",
            "head_dim",
            "ffn",
            "relative_buckets",
            "activation",
            "tied_embeddings",
        ),
        **cite(
            "Raffel et al. 2020 Sec. 2.1 (simplified layer norm, no bias, outside the residual "
            "path; relative position embeddings, 32 buckets, up to 128)",
            "norm",
            "norm_placement",
            "position",
        ),
        **cite("Raffel et al. 2020 abstract/Sec. 3.7: '11 billion parameters'", "published_params"),
    },
    notes=(
        "Survey nH 128 and HS 1024 agree with the paper: 128 heads of 128 dims (d_kv), so "
        "heads*head_dim (16384) is not d_model.",
        "Survey nL 24 is per stack: 24 encoder + 24 decoder layers.",
    ),
)

MT5 = ZooEntry(
    name="mt5",
    aliases=("mt5-xxl",),
    config=replace(
        _T5_FAMILY,
        name="mt5",
        vocab_size=250112,
        hidden=4096,
        layers=24,
        encoder_layers=24,
        heads=64,
        head_dim=64,
        ffn=10240,
        activation=Activation.GELU_TANH,
        gated_mlp=True,
    ),
    published_params=13_000_000_000,
    survey_params=survey_params(_MT5.size),
    survey=_MT5,
    claims=("encoder-decoder", "span corruption", "pre-RMS norm", "relative positions", "ReLU"),
    sources={
        **cite(
            "HF google/mt5-xxl config.json (vocab_size 250112, d_model 4096, num_layers 24, "
            "num_decoder_layers 24, num_heads 64, d_kv 64, d_ff 10240, feed_forward_proj "
            "gated-gelu, tie_word_embeddings false)",
            "vocab_size",
            "hidden",
            "layers",
            "encoder_layers",
            "heads",
            "head_dim",
            "ffn",
            "activation",
            "gated_mlp",
            "tied_embeddings",
        ),
        **cite(
            "Xue et al. 2021 Sec. 2 (mT5 follows T5.1.1) and Table 2 (XXL: 13B)",
            "norm",
            "position",
            "published_params",
        ),
    },
    notes=(
        "The survey lists ReLU; mT5 follows T5.1.1, whose MLP is GeGLU (gelu_new = tanh GELU, "
        "gated; feed_forward_proj 'gated-gelu' in the released config). The architecture uses "
        "GeGLU.",
        "The survey gives no nL/nH/HS; taken from the released mT5-XXL config.",
        "Untied input and output embeddings (T5.1.1), which is why 250k vocabulary rows cost 2 x "
        "1.02B params.",
    ),
)

UL2 = ZooEntry(
    name="ul2",
    aliases=("ul2-20b",),
    config=replace(
        _T5_FAMILY,
        name="ul2",
        vocab_size=32128,
        hidden=4096,
        layers=32,
        encoder_layers=32,
        heads=16,
        head_dim=256,
        ffn=16384,
        activation=Activation.SILU,
        gated_mlp=True,
    ),
    published_params=20_000_000_000,
    survey_params=survey_params(_UL2.size),
    survey=_UL2,
    claims=("encoder-decoder", "mixture of denoisers (MoD)"),
    sources={
        **cite(
            "HF google/ul2 config.json (vocab_size 32128, d_model 4096, num_layers 32, "
            "num_decoder_layers 32, num_heads 16, d_kv 256, d_ff 16384, feed_forward_proj "
            "gated-silu, tie_word_embeddings false)",
            "vocab_size",
            "hidden",
            "layers",
            "encoder_layers",
            "heads",
            "head_dim",
            "ffn",
            "activation",
            "gated_mlp",
            "tied_embeddings",
            "norm",
            "position",
        ),
        **cite(
            "Tay et al. 2022 (UL2) Sec. 5 (UL2 20B): 32 encoder + 32 decoder layers, d_model "
            "4096, d_ff 16384, 16 heads of 256; 20B parameters",
            "published_params",
        ),
    },
    notes=(
        "Survey nL 64 = 32 encoder + 32 decoder layers; nH 16 and HS 4096 agree with the paper.",
        "Norm, PE and activation are blank in the survey; the released config is T5.1.1-style "
        "(pre-RMS, relative buckets, SwiGLU).",
    ),
)

LAMDA = ZooEntry(
    name="lamda",
    aliases=("lamda-137b",),
    config=ModelConfig(
        name="lamda",
        vocab_size=32000,
        hidden=8192,
        layers=64,
        heads=128,
        head_dim=128,
        ffn=65536,
        activation=Activation.GELU,
        gated_mlp=True,
        position=Position.RELATIVE,
        max_position=2048,
        norm=Norm.LAYER,
        tied_embeddings=True,
    ),
    published_params=137_000_000_000,
    survey_params=survey_params(_LAMDA.size),
    survey=_LAMDA,
    claims=("causal decoder", "relative positions", "GeGLU", "layer norm"),
    sources={
        **cite(
            "Thoppilan et al. 2022 (LaMDA) Sec. 3 and the appendix's model hyperparameter table "
            "(137B: 64 layers, d_model 8192, d_ff 65536, 128 heads, d_k = d_v = 128; 32K "
            "SentencePiece vocabulary)",
            "vocab_size",
            "hidden",
            "layers",
            "heads",
            "head_dim",
            "ffn",
            "published_params",
        ),
        **cite(
            "LaMDA Sec. 3: 'relative attention as described in T5, gated-GELU activation'",
            "position",
            "activation",
            "gated_mlp",
        ),
        **cite("Survey Table 5 ('layer'); the paper does not say", "norm"),
    },
    notes=(
        "Norm kind and placement, biases and embedding tying are not given in the paper: "
        "pre-LayerNorm (survey: 'layer'), no linear biases and tied embeddings as in the "
        "T5/Mesh-TensorFlow lineage LaMDA is built with; our choice.",
    ),
)

GLAM = ZooEntry(
    name="glam",
    approximate=(
        (
            "its per-layer relative bias in T5's bucket form (32 buckets, distance 128): GLaM "
            "publishes neither the form nor its sizes, and Transformer-XL's projections would put "
            "the activated count 9% over 96.6B"
        ),
    ),
    aliases=("glam-64b-64e",),
    config=ModelConfig(
        name="glam",
        vocab_size=256000,
        hidden=8192,
        layers=64,
        heads=128,
        head_dim=128,
        ffn=32768,
        activation=Activation.GELU,
        gated_mlp=True,
        position=Position.RELATIVE,
        relative_per_layer=True,
        max_position=1024,
        qkv_bias=True,
        out_bias=True,
        mlp_bias=True,
        tied_embeddings=True,
        moe=MoeConfig(num_experts=64, top_k=2, expert_ffn=32768, every=2, gated=False),
    ),
    published_params=1_200_000_000_000,
    published_active=96_600_000_000,
    survey_params=survey_params(_GLAM.size),
    survey=_GLAM,
    claims=("MoE decoder", "MoE top-2", "relative positions", "GeLU", "bias"),
    sources={
        **cite(
            "Du et al. 2022 (GLaM) Table 4, GLaM (64B/64E): L=64, M=8192, H=32768, 128 heads of "
            "128, E=64; 1.2T total / 96.6B activated",
            "layers",
            "hidden",
            "ffn",
            "heads",
            "head_dim",
            "moe",
            "published_params",
            "published_active",
        ),
        **cite(
            "GLaM model-architecture section: MoE layer every other Transformer layer, top-2 "
            "gating (GShard)",
            "moe",
        ),
        **cite(
            "GLaM model-architecture section: Gated Linear Unit + GELU in the non-MoE "
            "feed-forward sublayers; per-layer relative positional bias (Dai et al. 2019)",
            "activation",
            "gated_mlp",
            "position",
            "relative_per_layer",
        ),
        **cite("GLaM: 256K SentencePiece vocabulary", "vocab_size"),
    },
    notes=(
        "The survey's HS 32768 is GLaM's FFN width H; the model width M is 8192.",
        "Experts are plain GELU MLPs (2 matrices); only the dense layers use the gated unit: this "
        "split reproduces both published counts (1.162T total, 96.6B activated), which all-gated "
        "or all-plain FFNs do not.",
        "GLaM cites Dai et al. 2019 for a per-layer relative positional bias. Transformer-XL's "
        "full form would add a d_model x heads·head_dim projection per layer (64 x 8192 x 16384 = "
        "8.6B, all activated): 105B activated against the published 96.6B, which the structure "
        "without it meets to 0.01%. So the published counts hold no such projection, and the "
        "entry keeps a learned bias per head and distance bucket (T5 buckets, one table for the "
        "stack; per-layer tables would add 0.26M): an approximation of a bias whose exact form "
        "GLaM does not publish.",
        "Biases follow the survey ('yes'); norm is pre-LayerNorm (survey 'layer'); tied "
        "embeddings make the activated count match 96.6B.",
    ),
)

# PaLM 540B (Chowdhery et al. 2022, Table 1 and Sec. 2): 118 layers, d_model 18432, 48 heads of 256,
# multi-query attention, parallel block, SwiGLU with d_ff = 4·d_model, RoPE, no biases in dense
# kernels or layer norms, shared input/output embeddings, 256k SentencePiece vocabulary; the
# pre-softmax logits are scaled by 1/sqrt(d_model) because the embeddings are shared (Sec. 5).
_PALM_540B = ModelConfig(
    name="palm",
    vocab_size=256000,
    hidden=18432,
    layers=118,
    heads=48,
    kv_heads=1,
    head_dim=256,
    ffn=4 * 18432,
    block=Block.PARALLEL,
    norm=Norm.LAYER,
    norm_bias=False,
    position=Position.ROTARY,
    rotary=RotaryConfig(interleaved=True),
    max_position=2048,
    activation=Activation.SILU,
    gated_mlp=True,
    tied_embeddings=True,
    logit_scale=18432**-0.5,
)
# The twin keeps the rule, 1/sqrt(d_model) at its own width (the published 1/136 would shrink
# every logit difference the twin's tests look at).
_PALM_TINY = {"logit_scale": TINY_HIDDEN**-0.5}
_PALM_SOURCES = {
    **cite(
        "Chowdhery et al. 2022 (PaLM) Table 1: 540B = 118 layers, 48 heads, d_model 18432, "
        "540.35B params",
        "layers",
        "heads",
        "hidden",
        "published_params",
    ),
    **cite(
        "PaLM Sec. 2: SwiGLU, d_ff = 4 d_model; parallel layers; multi-query attention (head size "
        "256); RoPE; shared input-output embeddings; no biases; 256k SentencePiece vocabulary",
        "ffn",
        "activation",
        "gated_mlp",
        "block",
        "kv_heads",
        "head_dim",
        "position",
        "tied_embeddings",
        "norm_bias",
        "vocab_size",
    ),
    **cite(
        "PaLM Sec. 5 (Training setup, weight initialization): input and output embeddings are "
        "shared, so the pre-softmax output logits are scaled by 1/sqrt(n), n the embedding size",
        "logit_scale",
    ),
}

PALM = ZooEntry(
    name="palm",
    aliases=("palm-540b",),
    config=_PALM_540B,
    tiny_overrides=_PALM_TINY,
    published_params=540_350_000_000,
    survey_params=survey_params(_PALM.size),
    survey=_PALM,
    claims=(
        "causal decoder",
        "parallel attention",
        "multi-query",
        "RoPE",
        "SwiGLU",
        "no bias",
        "layer norm",
    ),
    sources=_PALM_SOURCES,
    notes=(
        "48 heads x 256 = 12288 is narrower than d_model 18432; with that head size the count is "
        "540.3B, matching the paper's 540.35B.",
        "The logits are scaled by 1/sqrt(18432) (Sec. 5: shared input-output embeddings); the "
        "tiny twin scales by 1/sqrt of its own width.",
    ),
)

U_PALM = ZooEntry(
    name="u-palm",
    aliases=("upalm", "u-palm-540b"),
    config=_PALM_540B.replace(name="u-palm", arch=Arch.PREFIX_LM),
    tiny_overrides=_PALM_TINY,
    published_params=540_350_000_000,
    survey_params=survey_params(_UPALM.size),
    survey=_UPALM,
    claims=(
        "non-causal decoder",
        "mixture of denoisers (UL2R)",
        "parallel attention",
        "multi-query",
        "RoPE",
        "SwiGLU",
        "no bias",
    ),
    sources={
        **_PALM_SOURCES,
        **cite(
            "Tay et al. 2022 (U-PaLM): PaLM 540B continued with UL2R (prefix-LM denoisers)", "arch"
        ),
    },
    notes=(
        "U-PaLM is PaLM 540B trained further with the UL2 mixture of denoisers: PaLM's dims (118 "
        "layers, 48 heads of 256, MQA, d_model 18432, FFN 4 d SwiGLU, 256k vocabulary, parallel "
        "block), run as a prefix-LM (bidirectional over the prefix) as the survey's "
        "'non-causal-dec' says.",
    ),
)

PALM_2 = ZooEntry(
    name="palm-2",
    approximate=(
        ("PaLM's block at a depth that gives 340B: a closed model, no architecture is published"),
    ),
    aliases=("palm2",),
    config=_PALM_540B.replace(name="palm-2", arch=Arch.PREFIX_LM, layers=74),
    tiny_overrides=_PALM_TINY,
    published_params=340_000_000_000,
    survey_params=survey_params(_PALM2.size),
    survey=_PALM2,
    claims=("mixture of denoisers (MoD)", "parallel attention"),
    sources={
        **cite(
            "Closed: the PaLM 2 Technical Report (Anil et al. 2023) gives no dims. PaLM's block "
            "(Chowdhery et al. 2022 Table 1 / Sec. 2) is our choice",
            "hidden",
            "heads",
            "kv_heads",
            "head_dim",
            "ffn",
            "vocab_size",
            "block",
            "activation",
            "position",
            "logit_scale",
        ),
        **cite("Our choice: depth that gives ~340B with PaLM's block", "layers"),
        **cite(
            "Not in the report: 340B as reported by CNBC (May 2023), the only public figure",
            "published_params",
        ),
        **cite("PaLM 2 Technical Report: UL2-style mixture of objectives", "arch"),
    },
    notes=(
        "Closed model: no architecture is published. Best documented choice: the PaLM family "
        "block (parallel, MQA, SwiGLU, RoPE, 256k SentencePiece, no biases) with a prefix-LM mask "
        "for the mixture of denoisers; depth 74 is chosen so the total is near the 340B figure "
        "CNBC reported, so the count check is circular for this entry.",
        "The output logits are scaled by 1/sqrt(d_model) as in PaLM (Sec. 5, shared input-output "
        "embeddings): an assumption, since the report does not say whether PaLM 2 kept it.",
        "The survey gives no size (survey_params 0).",
    ),
)

ENTRIES: list[ZooEntry] = [T5, MT5, UL2, LAMDA, GLAM, PALM, U_PALM, PALM_2]
