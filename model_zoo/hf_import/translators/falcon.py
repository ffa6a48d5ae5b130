"""Falcon: rotary, multi-query (7B) or grouped KV with two parallel norms (40B/180B).

The grouped-KV form is the "new decoder architecture" of the 40B and 180B models.
"""

from __future__ import annotations

from irgraph.model_zoo.config import Block, ModelConfig, Norm, Position
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.rope import rotary_from_hf
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids

MODEL_TYPES = ("falcon",)


def translate(c: HFConfig) -> Plan:
    hidden = c.int("hidden_size")
    heads = c.first(("num_attention_heads", "n_head"))
    head_dim = hidden // heads
    c.only("alibi", (False,), "Falcon-RW's ALiBi variant is not supported")
    c.only(
        "apply_residual_connection_post_layernorm",
        (False,),
        "the residual is taken before the norm",
    )
    new_arch = c.bool("new_decoder_architecture", False)
    multi_query = c.bool("multi_query", True)
    parallel = c.bool("parallel_attn", True)
    kv_key = ("num_kv_heads", "n_head_kv")
    if new_arch:
        if not parallel:
            raise c.fail(
                "the new decoder architecture always runs attention and MLP in parallel",
                "parallel_attn",
            )
        kv_heads, packing = c.first(kv_key, heads), "kv_groups"
        norms = c.only("num_ln_in_parallel_attn", (None, 2, 1))
        block = Block.PARALLEL if norms == 1 else Block.PARALLEL_TWO_NORMS
    else:
        c.only("num_ln_in_parallel_attn", (None,), "only read by the new decoder architecture")
        if multi_query:
            c.first(kv_key, None)  # unused: multi-query means one KV head
            kv_heads, packing = 1, "blocks"
        else:
            kv_heads, packing = c.first(kv_key, heads), "heads"
            if kv_heads != heads:
                raise c.fail(
                    "without multi_query or the new architecture every head has its own KV",
                    "num_kv_heads",
                    expected=heads,
                )
        block = Block.PARALLEL if parallel else Block.SEQUENTIAL
    max_position = c.int("max_position_embeddings", 2048)
    bias = c.bool("bias", False)
    config = ModelConfig(
        name="falcon",
        vocab_size=c.int("vocab_size"),
        hidden=hidden,
        layers=c.first(("num_hidden_layers", "n_layer")),
        heads=heads,
        kv_heads=kv_heads,
        ffn=c.int("ffn_hidden_size", 4 * hidden),
        norm=Norm.LAYER,
        norm_eps=c.float("layer_norm_epsilon", 1e-5),
        position=Position.ROTARY,
        max_position=max_position,
        rotary=rotary_from_hf(c, head_dim=head_dim, max_position=max_position),
        activation=c.activation("activation", "gelu"),
        block=block,
        qkv_bias=bias,
        out_bias=bias,
        mlp_bias=bias,
        tied_embeddings=c.bool("tie_word_embeddings", True),
    )
    return plan(c, config, token_ids(c), qkv_packing=packing)
