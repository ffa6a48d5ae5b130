"""The tensor-role table: every known checkpoint module name -> its irgraph role.

Like llama.cpp's gguf-py `tensor_mapping.py`: one table, keyed by role, listing
each spelling the supported Hugging Face families use. `{i}` is a layer index,
`{e}` an expert index; `.weight` / `.bias` carry over to the role's name. Most
roles are final irgraph parameter names (the zoo contract); a few are staged
and finished by `assemble` in `weights.py`:

  layers.{i}.attn.qkv                  fused QKV, split by the model's packing (layouts.py)
  layers.{i}.moe.experts.{e}.gate|up|down   one expert's matrix, stacked over {e}
  layers.{i}.moe.experts.gate_up|down  transformers 5's stacked experts (no suffix), gate_up
                                       split in two

Names listed in IGNORED are buffers or duplicates that carry no weights of
their own (rotary caches, causal-mask buffers, T5's per-stack copies of the
shared embedding).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from irgraph.errors import ConfigError

_L = "model.layers.{i}"  # LLaMA, Mistral, Mixtral, DeepSeek, Nemotron
_NEOX = "gpt_neox.layers.{i}"
_H = "transformer.h.{i}"  # GPT-J, CodeGen, BLOOM, Falcon, StarCoder
_OPT = "model.decoder.layers.{i}"
_ENC = "encoder.block.{i}.layer"
_DEC = "decoder.block.{i}.layer"

ROLES: dict[str, tuple[str, ...]] = {
    "embed": (
        "model.embed_tokens",
        "gpt_neox.embed_in",
        "transformer.wte",
        "transformer.word_embeddings",
        "model.decoder.embed_tokens",
        "shared",
    ),
    "embed_positions": ("model.decoder.embed_positions", "transformer.wpe"),
    "embed_norm": ("transformer.word_embeddings_layernorm",),
    "norm": (
        "model.norm",
        "gpt_neox.final_layer_norm",
        "transformer.ln_f",
        "model.decoder.final_layer_norm",
        "decoder.final_layer_norm",
    ),
    "lm_head": ("lm_head", "embed_out"),
    # decoder blocks
    "layers.{i}.attn_norm": (
        f"{_L}.input_layernorm",
        f"{_NEOX}.input_layernorm",
        f"{_H}.input_layernorm",
        f"{_H}.ln_1",
        f"{_H}.ln_attn",
        f"{_OPT}.self_attn_layer_norm",
        f"{_DEC}.0.layer_norm",
    ),
    "layers.{i}.mlp_norm": (
        f"{_L}.post_attention_layernorm",
        f"{_NEOX}.post_attention_layernorm",
        f"{_H}.post_attention_layernorm",
        f"{_H}.ln_2",
        f"{_H}.ln_mlp",
        f"{_OPT}.final_layer_norm",
        f"{_DEC}.2.layer_norm",
    ),
    "layers.{i}.attn.q": (
        f"{_L}.self_attn.q_proj",
        f"{_H}.attn.q_proj",
        f"{_OPT}.self_attn.q_proj",
        f"{_DEC}.0.SelfAttention.q",
    ),
    "layers.{i}.attn.k": (
        f"{_L}.self_attn.k_proj",
        f"{_H}.attn.k_proj",
        f"{_OPT}.self_attn.k_proj",
        f"{_DEC}.0.SelfAttention.k",
    ),
    "layers.{i}.attn.v": (
        f"{_L}.self_attn.v_proj",
        f"{_H}.attn.v_proj",
        f"{_OPT}.self_attn.v_proj",
        f"{_DEC}.0.SelfAttention.v",
    ),
    "layers.{i}.attn.o": (
        f"{_L}.self_attn.o_proj",
        f"{_NEOX}.attention.dense",
        f"{_H}.self_attention.dense",
        f"{_H}.attn.out_proj",
        f"{_H}.attn.c_proj",
        f"{_OPT}.self_attn.out_proj",
        f"{_DEC}.0.SelfAttention.o",
    ),
    "layers.{i}.attn.qkv": (
        f"{_NEOX}.attention.query_key_value",
        f"{_H}.self_attention.query_key_value",
        f"{_H}.attn.c_attn",
        f"{_H}.attn.qkv_proj",
    ),
    # DeepSeek-v2 multi-head latent attention
    "layers.{i}.attn.q_a": (f"{_L}.self_attn.q_a_proj",),
    "layers.{i}.attn.q_a_norm": (f"{_L}.self_attn.q_a_layernorm",),
    "layers.{i}.attn.q_b": (f"{_L}.self_attn.q_b_proj",),
    "layers.{i}.attn.kv_a": (f"{_L}.self_attn.kv_a_proj_with_mqa",),
    "layers.{i}.attn.kv_a_norm": (f"{_L}.self_attn.kv_a_layernorm",),
    "layers.{i}.attn.kv_b": (f"{_L}.self_attn.kv_b_proj",),
    # dense MLP
    "layers.{i}.mlp.gate": (f"{_L}.mlp.gate_proj", f"{_DEC}.2.DenseReluDense.wi_0"),
    "layers.{i}.mlp.up": (
        f"{_L}.mlp.up_proj",
        f"{_NEOX}.mlp.dense_h_to_4h",
        f"{_H}.mlp.dense_h_to_4h",
        f"{_H}.mlp.fc_in",
        f"{_H}.mlp.c_fc",
        f"{_OPT}.fc1",
        f"{_DEC}.2.DenseReluDense.wi",
        f"{_DEC}.2.DenseReluDense.wi_1",
    ),
    "layers.{i}.mlp.down": (
        f"{_L}.mlp.down_proj",
        f"{_NEOX}.mlp.dense_4h_to_h",
        f"{_H}.mlp.dense_4h_to_h",
        f"{_H}.mlp.fc_out",
        f"{_H}.mlp.c_proj",
        f"{_OPT}.fc2",
        f"{_DEC}.2.DenseReluDense.wo",
    ),
    # mixture of experts
    "layers.{i}.moe.router": (f"{_L}.block_sparse_moe.gate", f"{_L}.mlp.gate"),
    "layers.{i}.moe.experts.{e}.gate": (
        f"{_L}.block_sparse_moe.experts.{{e}}.w1",
        f"{_L}.mlp.experts.{{e}}.gate_proj",
    ),
    "layers.{i}.moe.experts.{e}.up": (
        f"{_L}.block_sparse_moe.experts.{{e}}.w3",
        f"{_L}.mlp.experts.{{e}}.up_proj",
    ),
    "layers.{i}.moe.experts.{e}.down": (
        f"{_L}.block_sparse_moe.experts.{{e}}.w2",
        f"{_L}.mlp.experts.{{e}}.down_proj",
    ),
    "layers.{i}.moe.experts.gate_up": (
        f"{_L}.mlp.experts.gate_up_proj",
        f"{_L}.block_sparse_moe.experts.gate_up_proj",
    ),
    "layers.{i}.moe.experts.down": (
        f"{_L}.mlp.experts.down_proj",
        f"{_L}.block_sparse_moe.experts.down_proj",
    ),
    "layers.{i}.moe.shared.gate": (f"{_L}.mlp.shared_experts.gate_proj",),
    "layers.{i}.moe.shared.up": (f"{_L}.mlp.shared_experts.up_proj",),
    "layers.{i}.moe.shared.down": (f"{_L}.mlp.shared_experts.down_proj",),
    # T5 decoder: relative bias (block 0 only), cross-attention
    "relative_bias": ("decoder.block.0.layer.0.SelfAttention.relative_attention_bias",),
    "layers.{i}.cross_norm": (f"{_DEC}.1.layer_norm",),
    "layers.{i}.cross_attn.q": (f"{_DEC}.1.EncDecAttention.q",),
    "layers.{i}.cross_attn.k": (f"{_DEC}.1.EncDecAttention.k",),
    "layers.{i}.cross_attn.v": (f"{_DEC}.1.EncDecAttention.v",),
    "layers.{i}.cross_attn.o": (f"{_DEC}.1.EncDecAttention.o",),
    # T5 encoder
    "encoder.relative_bias": ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias",),
    "encoder.norm": ("encoder.final_layer_norm",),
    "encoder.layers.{i}.attn_norm": (f"{_ENC}.0.layer_norm",),
    "encoder.layers.{i}.attn.q": (f"{_ENC}.0.SelfAttention.q",),
    "encoder.layers.{i}.attn.k": (f"{_ENC}.0.SelfAttention.k",),
    "encoder.layers.{i}.attn.v": (f"{_ENC}.0.SelfAttention.v",),
    "encoder.layers.{i}.attn.o": (f"{_ENC}.0.SelfAttention.o",),
    "encoder.layers.{i}.mlp_norm": (f"{_ENC}.1.layer_norm",),
    "encoder.layers.{i}.mlp.gate": (f"{_ENC}.1.DenseReluDense.wi_0",),
    "encoder.layers.{i}.mlp.up": (f"{_ENC}.1.DenseReluDense.wi", f"{_ENC}.1.DenseReluDense.wi_1"),
    "encoder.layers.{i}.mlp.down": (f"{_ENC}.1.DenseReluDense.wo",),
}

IGNORED = (
    r".*\.rotary_emb\.inv_freq",  # recomputed rotary frequencies
    r"transformer\.h\.\d+\.attn\.(bias|masked_bias)",  # GPT-J / CodeGen causal-mask buffers
    r"gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias)",  # GPT-NeoX causal-mask buffers
    r"(encoder|decoder)\.embed_tokens\.weight",  # T5: copies of shared.weight
)


def _pattern(template: str) -> re.Pattern[str]:
    body = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{e\}", r"(?P<e>\d+)")
    return re.compile(rf"{body}(?:\.(?P<suffix>weight|bias))?")


_TABLE = [(role, _pattern(name)) for role, names in ROLES.items() for name in names]
_IGNORED = [re.compile(p) for p in IGNORED]


def role_of(name: str) -> str | None:
    """The role name of checkpoint tensor `name` ("layers.3.attn.q.weight"), None when ignored.

    Raises ConfigError for a tensor the table does not know: dropping weights
    silently would import a different model.
    """
    for role, pattern in _TABLE:
        m = pattern.fullmatch(name)
        if m:
            groups = m.groupdict()
            out = role.replace("{i}", groups.get("i") or "").replace("{e}", groups.get("e") or "")
            return f"{out}.{groups['suffix']}" if groups.get("suffix") else out
    if any(p.fullmatch(name) for p in _IGNORED):
        return None
    raise ConfigError(f"checkpoint tensor {name!r} has no role in the tensor-role table")


def assign_roles(names: Iterable[str], where: str = "") -> dict[str, str]:
    """role name -> checkpoint name for every tensor; two tensors claiming one role is an error."""
    roles: dict[str, str] = {}
    for name in sorted(names):
        try:
            role = role_of(name)
        except ConfigError as e:
            raise ConfigError(e.message, where=where) from None
        if role is None:
            continue
        if role in roles:
            raise ConfigError(
                f"checkpoint tensors {roles[role]!r} and {name!r} both map to {role!r}", where=where
            )
        roles[role] = name
    return roles
