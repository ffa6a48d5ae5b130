"""StarCoder / SantaCoder (gpt_bigcode): GPT-2 block, multi-query attention, learned positions."""

from __future__ import annotations

from irgraph.model_zoo.config import ModelConfig, Norm, Position
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids

MODEL_TYPES = ("gpt_bigcode",)
# fp32-softmax switches (precision only) and the runtime knobs of BigCode's inference runner.
HARMLESS = (
    "attention_softmax_in_fp32",
    "scale_attention_softmax_in_fp32",
    "inference_runner",
    "max_batch_size",
    "max_sequence_length",
    "pad_key_length",
    "pre_allocate_kv_cache",
    "validate_runner_input",
    "summary_type",
    "summary_use_proj",
    "summary_activation",
    "summary_proj_to_labels",
    "summary_first_dropout",
    "n_ctx",
)


def translate(c: HFConfig) -> Plan:
    hidden, heads = c.first(("n_embd", "hidden_size")), c.first(("n_head", "num_attention_heads"))
    multi_query = c.bool("multi_query", True)
    kv_heads = 1 if multi_query else heads
    c.only("num_key_value_heads", (None, kv_heads), "derived from multi_query")
    config = ModelConfig(
        name="gpt_bigcode",
        vocab_size=c.int("vocab_size"),
        hidden=hidden,
        layers=c.first(("n_layer", "num_hidden_layers")),
        heads=heads,
        kv_heads=kv_heads,
        ffn=c.int("n_inner", 4 * hidden),
        norm=Norm.LAYER,
        norm_eps=c.float("layer_norm_epsilon", 1e-5),
        position=Position.LEARNED,
        max_position=c.first(("n_positions", "max_position_embeddings"), 1024),
        activation=c.activation("activation_function", "gelu_pytorch_tanh"),
        qkv_bias=True,
        out_bias=True,
        mlp_bias=True,
        attn_scale=None if c.bool("scale_attn_weights", True) else 1.0,
        tied_embeddings=c.bool("tie_word_embeddings", True),
    )
    return plan(
        c, config, token_ids(c), harmless=HARMLESS, qkv_packing="blocks" if multi_query else "heads"
    )
