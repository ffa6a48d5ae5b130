"""Code models: CodeGen-16B, CodeT5+ 16B (Salesforce) and StarCoder 15.5B (BigCode)."""

from __future__ import annotations

from irgraph.model_zoo.config import (
    Activation,
    Arch,
    Block,
    ModelConfig,
    Position,
    RotaryConfig,
    ZooEntry,
)
from irgraph.model_zoo.survey_table5 import cite, survey, survey_params

_CODEGEN = survey("CodeGen (16B)")
_CODET5P = survey("CodeT5+ (16B)")
_STARCODER = survey("StarCoder (15.5B)")

# CodeGen (HF model_type "codegen", GPT-J block): one LayerNorm feeding attention and MLP in
# parallel, interleaved (rotate-every-two) RoPE on the first rotary_dim dims of each head,
# q/k/v/out without bias, MLP and LM head with bias, untied head.
_CODEGEN_16B = ModelConfig(
    name="codegen",
    vocab_size=51200,
    hidden=6144,
    layers=34,
    heads=24,
    ffn=4 * 6144,
    block=Block.PARALLEL,
    position=Position.ROTARY,
    rotary=RotaryConfig(fraction=64 / 256, interleaved=True),
    max_position=2048,
    activation=Activation.GELU_TANH,
    mlp_bias=True,
    lm_head_bias=True,
    bos_token_id=1,
    eos_token_id=50256,
    pad_token_id=50256,
)
_CODEGEN_SOURCES = cite(
    "HF Salesforce/codegen-16B-mono config.json (vocab_size 51200, n_embd 6144, n_layer 34, "
    "n_head 24, rotary_dim 64, n_positions 2048, n_inner null = 4 n_embd, activation_function "
    "gelu_new, tie_word_embeddings false) and modeling_codegen.py (parallel attn + MLP on one "
    "ln_1, qkv_proj/out_proj without bias, lm_head with bias)",
    "vocab_size",
    "hidden",
    "layers",
    "heads",
    "rotary",
    "max_position",
    "ffn",
    "activation",
    "block",
    "qkv_bias",
    "lm_head_bias",
    "tied_embeddings",
)

CODEGEN = ZooEntry(
    name="codegen",
    aliases=("codegen-16b", "codegen-16b-mono"),
    config=_CODEGEN_16B,
    published_params=16_100_000_000,
    survey_params=survey_params(_CODEGEN.size),
    survey=_CODEGEN,
    claims=("causal decoder", "parallel attention", "RoPE", "layer norm"),
    sources={
        **_CODEGEN_SOURCES,
        **cite("Nijkamp et al. 2023 (CodeGen): CodeGen-16.1B", "published_params"),
    },
    notes=("The survey's nH 24 and nL 34 match; HS (blank) is 6144, 24 heads of 256.",),
)

CODET5PLUS = ZooEntry(
    name="codet5plus",
    approximate=(
        (
            "ungated cross-attention: no source read here confirms the form of the released code's "
            "scalar gate alpha_xattn"
        ),
    ),
    aliases=("codet5+", "codet5p", "codet5p-16b"),
    config=_CODEGEN_16B.replace(
        name="codet5plus",
        arch=Arch.ENCODER_DECODER,
        encoder_layers=20,
        encoder_hidden=1024,
        encoder_heads=16,
        encoder_ffn=4 * 1024,
        cross_attention_layers=1,
        encoder_rotary=RotaryConfig(fraction=32 / 64, interleaved=True),
        decoder_start_token_id=50256,
    ),
    published_params=16_000_000_000,
    survey_params=survey_params(_CODET5P.size),
    survey=_CODET5P,
    claims=(
        "encoder-decoder",
        "span denoising + causal LM + contrastive + matching objectives",
        "shallow encoder, deep decoder",
    ),
    sources={
        **_CODEGEN_SOURCES,
        **cite(
            "HF Salesforce/codet5p-16b config.json: encoder = CodeGen-350M-mono (n_embd 1024, "
            "n_layer 20, n_head 16, rotary_dim 32), decoder = CodeGen-16B-mono with "
            "cross-attention; enc_to_dec_proj maps 1024 -> 6144 (modeling_codet5p.py)",
            "encoder_layers",
            "encoder_hidden",
            "encoder_heads",
            "encoder_ffn",
            "encoder_rotary",
            "arch",
        ),
        **cite(
            "Wang et al. 2023 (CodeT5+) Sec. 3 (compute-efficient pretraining): frozen decoder "
            "LLM, trainable shallow encoder and cross-attention inserted in the top-L decoder "
            "layers (L = 1); 16B",
            "cross_attention_layers",
            "published_params",
        ),
    },
    notes=(
        "The survey gives no dims for CodeT5+ 16B; it is CodeGen-350M-mono as encoder and "
        "CodeGen-16B-mono as decoder (the 'shallow encoder, deep decoder' design), "
        "cross-attention in the top decoder layer.",
        "Only some decoder layers carry cross-attention (salesforce/CodeT5 "
        "CodeT5+/instruct_tune_codet5p.py checks hasattr(layer, 'crossattention') per layer), "
        "each with a learned scalar gate alpha_xattn on its output; the IR's cross-attention is "
        "ungated (one scalar per layer, no count change).",
        "The encoder has CodeGen-350M's own rotary settings: 32 of each 64-dim head rotate "
        "(rotary_dim 32), where the decoder rotates 64 of 256. No parameter change.",
    ),
)

STARCODER = ZooEntry(
    name="starcoder",
    aliases=("starcoder-15.5b", "starcoderbase"),
    config=ModelConfig(
        name="starcoder",
        vocab_size=49152,
        hidden=6144,
        layers=40,
        heads=48,
        kv_heads=1,
        ffn=24576,
        position=Position.LEARNED,
        max_position=8192,
        activation=Activation.GELU_TANH,
        qkv_bias=True,
        out_bias=True,
        mlp_bias=True,
        tied_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    ),
    published_params=15_500_000_000,
    survey_params=survey_params(_STARCODER.size),
    survey=_STARCODER,
    claims=("causal decoder", "fill-in-the-middle", "multi-query", "learned positions"),
    sources={
        **cite(
            "HF bigcode/starcoder config.json (model_type gpt_bigcode: vocab_size 49152, n_embd "
            "6144, n_layer 40, n_head 48, multi_query true, n_inner 24576, n_positions 8192, "
            "activation_function gelu_pytorch_tanh; no tie_word_embeddings key, so the default "
            "tied LM head)",
            "vocab_size",
            "hidden",
            "layers",
            "heads",
            "kv_heads",
            "ffn",
            "max_position",
            "activation",
            "tied_embeddings",
        ),
        **cite(
            "Li et al. 2023 (StarCoder) Sec. 5 (model architecture): SantaCoder architecture "
            "(GPT-2 with MQA, learned absolute positions, pre-LN, biases), 15.5B parameters",
            "position",
            "norm_placement",
            "qkv_bias",
            "published_params",
        ),
    },
    notes=(
        "Norm and activation are blank in the survey: pre-LayerNorm and tanh-GELU from the "
        "release.",
    ),
)

ENTRIES: list[ZooEntry] = [CODEGEN, CODET5PLUS, STARCODER]
