"""BLOOM: ALiBi, a LayerNorm right after the embedding, fused per-head QKV, tanh GELU."""

from __future__ import annotations

from irgraph.model_zoo.config import Activation, ModelConfig, Norm, Position
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids

MODEL_TYPES = ("bloom",)
# Megatron kernel-fusion switches and a Megatron-only alibi offset that transformers never reads.
HARMLESS = (
    "attention_softmax_in_fp32",
    "bias_dropout_fusion",
    "masked_softmax_fusion",
    "offset_alibi",
    "skip_bias_add",
    "skip_bias_add_qkv",
    "slow_but_exact",
    "unk_token_id",
    "seq_length",
)


def translate(c: HFConfig) -> Plan:
    hidden = c.first(("hidden_size", "n_embed"))
    c.only(
        "apply_residual_connection_post_layernorm",
        (False,),
        "the residual is taken before the norm",
    )
    c.only("n_inner", (None,), "BLOOM's MLP is always 4 x hidden")
    config = ModelConfig(
        name="bloom",
        vocab_size=c.int("vocab_size"),
        hidden=hidden,
        layers=c.first(("n_layer", "num_hidden_layers")),
        heads=c.first(("n_head", "num_attention_heads")),
        ffn=4 * hidden,
        norm=Norm.LAYER,
        norm_eps=c.float("layer_norm_epsilon", 1e-5),
        embedding_norm=True,
        position=Position.ALIBI,
        activation=Activation.GELU_TANH,  # bloom_gelu_forward: the tanh approximation
        qkv_bias=True,
        out_bias=True,
        mlp_bias=True,
        tied_embeddings=c.bool("tie_word_embeddings", True),
    )
    return plan(c, config, token_ids(c), harmless=HARMLESS, qkv_packing="heads")
