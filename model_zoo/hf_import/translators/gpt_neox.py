"""GPT-NeoX / Pythia: fused per-head QKV, partial rotary (25%), parallel residual with two norms."""

from __future__ import annotations

from irgraph.model_zoo.config import Block, ModelConfig, Norm, Position
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.rope import rotary_from_hf
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids

MODEL_TYPES = ("gpt_neox",)


def translate(c: HFConfig) -> Plan:
    hidden, heads = c.int("hidden_size"), c.int("num_attention_heads", minimum=1)
    max_position = c.int("max_position_embeddings", 2048)
    bias = c.bool("attention_bias", True)
    parallel = c.bool("use_parallel_residual", True)
    config = ModelConfig(
        name="gpt_neox",
        vocab_size=c.int("vocab_size"),
        hidden=hidden,
        layers=c.int("num_hidden_layers"),
        heads=heads,
        ffn=c.int("intermediate_size"),
        norm=Norm.LAYER,
        norm_eps=c.float("layer_norm_eps", 1e-5),
        position=Position.ROTARY,
        max_position=max_position,
        rotary=rotary_from_hf(
            c, head_dim=hidden // heads, max_position=max_position, default_fraction=0.25
        ),
        activation=c.activation("hidden_act", "gelu"),
        block=Block.PARALLEL_TWO_NORMS if parallel else Block.SEQUENTIAL,
        qkv_bias=bias,
        out_bias=bias,
        mlp_bias=True,
        tied_embeddings=c.bool("tie_word_embeddings", False),
    )
    return plan(c, config, token_ids(c), qkv_packing="heads")
