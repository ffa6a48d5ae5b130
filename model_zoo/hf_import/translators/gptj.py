"""GPT-J: parallel block with one norm, interleaved partial rotary (base 10000), biased LM head."""

from __future__ import annotations

from irgraph.model_zoo.config import Block, ModelConfig, Norm, Position, RotaryConfig
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids

MODEL_TYPES = ("gptj",)
# GPT-2-style classification-head settings and flags the HF code never reads.
SUMMARY = (
    "summary_type",
    "summary_use_proj",
    "summary_activation",
    "summary_proj_to_labels",
    "summary_first_dropout",
    "gradient_checkpointing",
)


def parallel_rotary_config(c: HFConfig, name: str) -> ModelConfig:
    """The GPT-J block shared by CodeGen.

    n_embd/n_head/n_layer naming, a sin/cos table of n_positions rows.
    """
    hidden, heads = c.first(("n_embd", "hidden_size")), c.first(("n_head", "num_attention_heads"))
    head_dim = hidden // heads
    max_position = c.first(("n_positions", "max_position_embeddings"), 2048)
    c.only("rotary", (True,), "GPT-J style models always rotate")
    c.only("scale_attn_weights", (True,), "the transformers code always scales by 1/sqrt(head_dim)")
    return ModelConfig(
        name=name,
        vocab_size=c.int("vocab_size"),
        hidden=hidden,
        layers=c.first(("n_layer", "num_hidden_layers")),
        heads=heads,
        ffn=c.int("n_inner", 4 * hidden),
        norm=Norm.LAYER,
        norm_eps=c.float("layer_norm_epsilon", 1e-5),
        position=Position.ROTARY,
        max_position=max_position,
        # transformers builds the sin/cos table with base 10000 and reads no rope keys here
        rotary=RotaryConfig(fraction=c.int("rotary_dim", 64) / head_dim, interleaved=True),
        activation=c.activation("activation_function", "gelu_new"),
        block=Block.PARALLEL,
        mlp_bias=True,
        lm_head_bias=True,
        tied_embeddings=c.bool("tie_word_embeddings", False),
    )


def translate(c: HFConfig) -> Plan:
    return plan(c, parallel_rotary_config(c, "gptj"), token_ids(c), harmless=SUMMARY)
