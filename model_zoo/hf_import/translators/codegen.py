"""CodeGen: GPT-J's block, its fused QKV packed for 4-way model parallelism ([q, v, k] a shard)."""

from __future__ import annotations

from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids
from irgraph.model_zoo.hf_import.translators.gptj import SUMMARY, parallel_rotary_config

MODEL_TYPES = ("codegen",)


def translate(c: HFConfig) -> Plan:
    config = parallel_rotary_config(c, "codegen")
    c.get(
        "n_ctx", None
    )  # only bounds a rotary_dim the attention never uses (CodeGenModel.rotary_dim)
    return plan(c, config, token_ids(c), harmless=SUMMARY, qkv_packing="mp4_qvk")
