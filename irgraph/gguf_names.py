"""GGUF tensor names and llama.cpp's rotary row order, shared by the GGUF writer and importer.

The IR names a weight by its role (`layers.{i}.attn.q.weight`); GGUF by gguf-py's
MODEL_TENSOR member (`blk.{i}.attn_q.weight`). The two tables below map one to the other, in
the style of gguf-py's `tensor_mapping.py`; `codegen/gguf` writes through them and
`model_zoo/gguf_import` reads back through them, so the mapping lives once, here in the core.

Rotary: llama.cpp's NORM rope (LLaMA) rotates feature pairs (2i, 2i+1), NEOX rope and the IR's
rotate-half form pairs (i, i+d/2). `rope_order` is the feature order within one head that takes
one layout to the other; `head_rows` spreads it over every head of a projection.
"""

from __future__ import annotations

import numpy as np

# IR parameter role (after "layers.{i}.") -> gguf MODEL_TENSOR member name
LAYER_TENSORS: dict[str, str] = {
    "attn_norm": "ATTN_NORM",  # the attention input norm
    "mlp_norm": "FFN_NORM",  # the MLP input norm
    "attn.q": "ATTN_Q",
    "attn.k": "ATTN_K",
    "attn.v": "ATTN_V",
    "attn.o": "ATTN_OUT",
    "mlp.up": "FFN_UP",
    "mlp.gate": "FFN_GATE",
    "mlp.down": "FFN_DOWN",
    "attn.q_a": "ATTN_Q_A",  # DeepSeek-v2 latent attention: low-rank q
    "attn.q_a_norm": "ATTN_Q_A_NORM",
    "attn.q_b": "ATTN_Q_B",
    "attn.kv_a": "ATTN_KV_A_MQA",  # the cached latent and the shared rotated key part
    "attn.kv_a_norm": "ATTN_KV_A_NORM",
    "attn.kv_b": "ATTN_KV_B",  # latent -> per-head key (no rope) and value
    "moe.router": "FFN_GATE_INP",  # the router's logits
    "moe.experts.up": "FFN_UP_EXP",  # [experts, ffn, hidden], one tensor for all experts
    "moe.experts.gate": "FFN_GATE_EXP",
    "moe.experts.down": "FFN_DOWN_EXP",
    "moe.shared.up": "FFN_UP_SHEXP",
    "moe.shared.gate": "FFN_GATE_SHEXP",
    "moe.shared.down": "FFN_DOWN_SHEXP",
}
MODEL_TENSORS: dict[str, str] = {
    "embed": "TOKEN_EMBD",
    "embed_positions": "POS_EMBD",
    "embed_norm": "TOKEN_EMBD_NORM",
    "norm": "OUTPUT_NORM",
    "lm_head": "OUTPUT",
}
EXPERT_STACKS = ("moe.experts.up", "moe.experts.gate", "moe.experts.down")  # no `.weight` in IR


def gguf_name(layer: int | None, role: str, kind: str, roles: dict[str, str] | None = None) -> str:
    """The GGUF tensor name of an IR role (`roles`: an architecture's overrides)."""
    import gguf

    member = (roles or {}).get(role) or (
        LAYER_TENSORS[role] if layer is not None else MODEL_TENSORS[role]
    )
    base = gguf.TENSOR_NAMES[getattr(gguf.MODEL_TENSOR, member)]
    return f"{base.format(bid=layer)}.{kind}"


def ir_name(layer: int | None, role: str, kind: str) -> str:
    """The IR parameter name of a role (expert stacks carry no `.weight`: the zoo's contract)."""
    stem = role if layer is None else f"layers.{layer}.{role}"
    return stem if role in EXPERT_STACKS and kind == "weight" else f"{stem}.{kind}"


def rope_order(head_dim: int, rotary_dim: int, to_interleaved: bool) -> np.ndarray:
    """Feature order within one head: rotate-half pairs -> (2i, 2i+1) pairs, or back."""
    half = rotary_dim // 2
    order = np.arange(head_dim)
    pairs = np.stack([np.arange(half), np.arange(half) + half], axis=1).reshape(-1)  # (i, i+h)
    if to_interleaved:
        order[:rotary_dim] = pairs  # new[2i] = old[i], new[2i+1] = old[i + half]
    else:
        order[pairs] = np.arange(rotary_dim)  # new[i] = old[2i], new[i + half] = old[2i + 1]
    return order


def head_rows(heads: int, head_dim: int, order: np.ndarray) -> np.ndarray:
    """`order` applied within each of `heads` consecutive row blocks of a projection."""
    return (np.arange(heads)[:, None] * head_dim + order[None, :]).reshape(-1)


__all__ = [
    "EXPERT_STACKS",
    "LAYER_TENSORS",
    "MODEL_TENSORS",
    "gguf_name",
    "head_rows",
    "ir_name",
    "rope_order",
]
