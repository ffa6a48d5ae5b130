"""DeepSeek-V2 / V2-Lite: multi-head latent attention (MLA), YaRN, shared + routed experts.

The rotary part is interleaved. The softmax scale is left to the builder,
which derives DeepSeek's 1/sqrt(nope+rope) · mscale(factor, mscale_all_dim)²
from the YaRN settings (`yarn_apply_mscale` in transformers).
"""

from __future__ import annotations

from irgraph.model_zoo.config import MlaConfig, ModelConfig, MoeConfig, Norm, Position, RopeScaling
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.rope import rope_dict, rotary_from_hf
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids

MODEL_TYPES = ("deepseek_v2",)
HARMLESS = ("ep_size",)  # expert-parallel degree


def translate(c: HFConfig) -> Plan:
    hidden, heads = c.int("hidden_size"), c.int("num_attention_heads", minimum=1)
    c.only("num_key_value_heads", (None, heads), "MLA expands keys and values for every head")
    c.only("attention_bias", (False,), "biased MLA projections are not supported")
    c.only("mlp_bias", (False,))
    c.only("moe_layer_freq", (1,), "DeepSeek-V2 routes every layer after first_k_dense_replace")
    c.only("scoring_func", ("softmax",), "sigmoid scoring is DeepSeek-V3's")
    method = c.only("topk_method", ("greedy", "group_limited_greedy"))
    nope, rope_dim = c.int("qk_nope_head_dim", 128), c.int("qk_rope_head_dim", 64)
    c.only("qk_head_dim", (None, nope + rope_dim), "derived: qk_nope_head_dim + qk_rope_head_dim")
    c.only(
        "head_dim",
        (None, rope_dim),
        "transformers sets head_dim to qk_rope_head_dim for the rotary",
    )
    max_position = c.int("max_position_embeddings", 2048)
    rotary = rotary_from_hf(c, head_dim=rope_dim, max_position=max_position, interleaved=True)
    if rotary.scaling not in (RopeScaling.NONE, RopeScaling.YARN) and "mscale_all_dim" in rope_dict(
        c
    ):
        raise c.fail(
            "mscale_all_dim (a softmax temperature) is only understood with YaRN", "rope_scaling"
        )
    grouped = method == "group_limited_greedy"
    moe = MoeConfig(
        num_experts=c.int("n_routed_experts"),
        top_k=c.int("num_experts_per_tok"),
        expert_ffn=c.int("moe_intermediate_size"),
        first_dense=c.int("first_k_dense_replace", 0),
        shared_experts=c.int("n_shared_experts", 2),
        # DeepSeek's own code renormalises when norm_topk_prob (V2 ships false); transformers
        # ignores the key
        normalize=c.bool("norm_topk_prob", False),
        n_group=c.int("n_group", 1) if grouped else 1,
        topk_group=c.int("topk_group", 1) if grouped else 1,
        scaling=c.float("routed_scaling_factor", 1.0),
    )
    if not grouped:
        c.get("n_group", None), c.get("topk_group", None)  # only read by group_limited_greedy
    config = ModelConfig(
        name="deepseek_v2",
        vocab_size=c.int("vocab_size"),
        hidden=hidden,
        layers=c.int("num_hidden_layers"),
        heads=heads,
        ffn=c.int("intermediate_size"),
        norm=Norm.RMS,
        norm_eps=c.float("rms_norm_eps", 1e-6),
        norm_bias=False,
        position=Position.ROTARY,
        max_position=max_position,
        rotary=rotary,
        activation=c.activation("hidden_act", "silu"),
        gated_mlp=True,
        tied_embeddings=c.bool("tie_word_embeddings", False),
        moe=moe,
        # q_lora_rank: explicit null = q projected directly (V2-Lite); absent = transformers' 1536
        mla=MlaConfig(
            kv_rank=c.int("kv_lora_rank", 512),
            q_rank=c.raw("q_lora_rank", 1536) or 0,
            nope_dim=nope,
            rope_dim=rope_dim,
            v_dim=c.int("v_head_dim", 128),
        ),
    )
    return plan(c, config, token_ids(c), harmless=HARMLESS)
