"""Nemotron (Nemotron-4 / Minitron): layernorm1p (stores w-1), 50% rotary, squared-ReLU MLP."""

from __future__ import annotations

from irgraph.model_zoo.config import ModelConfig, Norm, Position
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.rope import rotary_from_hf
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids

MODEL_TYPES = ("nemotron",)


def translate(c: HFConfig) -> Plan:
    hidden, heads = c.int("hidden_size"), c.int("num_attention_heads", minimum=1)
    head_dim = c.int("head_dim", hidden // heads)
    max_position = c.int("max_position_embeddings", 4096)
    bias = c.bool("attention_bias", False)
    config = ModelConfig(
        name="nemotron",
        vocab_size=c.int("vocab_size"),
        hidden=hidden,
        layers=c.int("num_hidden_layers"),
        heads=heads,
        kv_heads=c.int("num_key_value_heads", heads),
        head_dim=head_dim,
        ffn=c.int("intermediate_size"),
        norm=Norm.LAYER,
        norm_eps=c.float("norm_eps", 1e-5),
        norm_weight_offset=1.0,  # NemotronLayerNorm1P multiplies by (weight + 1)
        position=Position.ROTARY,
        max_position=max_position,
        rotary=rotary_from_hf(
            c, head_dim=head_dim, max_position=max_position, default_fraction=0.5
        ),
        activation=c.activation("hidden_act", "relu2"),
        qkv_bias=bias,
        out_bias=bias,
        mlp_bias=c.bool("mlp_bias", False),
        tied_embeddings=c.bool("tie_word_embeddings", False),
    )
    return plan(c, config, token_ids(c))
