"""llama.cpp architectures, one row each: what structure its graph builder computes, and its keys.

`choose(structure)` returns the first row whose builder computes exactly the graph's structure;
when none does, the CodegenError lists, per row, what the graph has that its builder lacks
(read against the pinned llama.cpp's `src/models/<arch>.cpp`; see docs in the row comments).
The weights' GGUF names come from gguf-py's tables (`gguf.TENSOR_NAMES`), keyed by the IR's
parameter roles (`TENSORS` below, in the style of gguf-py's `tensor_mapping.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from irgraph.codegen.gguf.structure import Structure
from irgraph.errors import CodegenError

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

Demands = Callable[[Structure], list[str]]


@dataclass(frozen=True)
class Arch:
    """One llama.cpp architecture: its gguf-py name, rotary layout and what its builder computes."""

    name: str  # gguf MODEL_ARCH member, e.g. "LLAMA"
    rope: str  # "norm": pairs (2i, 2i+1); "neox": pairs (i, i+d/2); "": no rotary
    lacks: Demands  # what in `structure` this builder does not compute ([] = fits)
    keys: Callable[[Any, Structure], None]  # writes the architecture's hyperparameter keys
    fused_qkv: bool = False  # the builder reads one ATTN_QKV tensor (q, k, v rows stacked)

    @property
    def gguf_name(self) -> str:
        import gguf

        return str(gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, self.name)])


def _common_keys(w: Any, s: Structure) -> None:
    w.add_context_length(s.max_position or 2048)
    w.add_embedding_length(s.hidden)
    w.add_block_count(s.layers)
    w.add_feed_forward_length(s.ffn)
    w.add_head_count(s.heads)
    w.add_head_count_kv(s.kv_heads)
    w.add_vocab_size(s.vocab)
    if s.head_dim * s.heads != s.hidden:
        w.add_key_length(s.head_dim)
        w.add_value_length(s.head_dim)


def _rope_keys(w: Any, s: Structure) -> None:
    w.add_rope_dimension_count(s.rotary_dim)
    w.add_rope_freq_base(float(s.rotary.get("base", 10000.0)))
    if s.rotary.get("scaling", "none") == "linear":
        import gguf

        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(s.rotary["factor"]))


def _moe_keys(w: Any, s: Structure) -> None:
    if s.moe is not None:
        w.add_expert_count(s.moe.experts)
        w.add_expert_used_count(s.moe.top_k)


def _llama_keys(w: Any, s: Structure) -> None:
    _common_keys(w, s)
    _rope_keys(w, s)
    _moe_keys(w, s)
    w.add_layer_norm_rms_eps(s.norm_eps)


def _decoder_basics(s: Structure) -> list[str]:
    """What no architecture here computes: every row's builder is a causal pre-norm decoder."""
    lacks = []
    if not s.causal:
        lacks.append("bidirectional attention")
    if s.placement != "pre":
        lacks.append(f"{s.placement}-norm residuals")
    if s.softcap:
        lacks.append(f"attention logit softcap {s.softcap}")
    if s.scaled:
        lacks.append(f"scaled {', '.join(s.scaled)}")
    if s.norm_offset:
        lacks.append(f"norm weight offset {s.norm_offset}")
    if not s.final_norm:
        lacks.append("no final norm")
    if s.extra:
        lacks.append(f"parameters without a GGUF role ({', '.join(s.extra[:3])})")
    return lacks


def _default_scale(s: Structure) -> list[str]:
    if s.attn_scale is not None and not math.isclose(s.attn_scale, s.head_dim**-0.5):
        return [f"attention scale {s.attn_scale:g} (the builder uses 1/sqrt(head_dim))"]
    return []


def _llama_lacks(s: Structure) -> list[str]:
    """src/models/llama.cpp: RMS pre-norm, sequential, full rotary, SwiGLU (or softmax-routed
    SwiGLU experts, Mixtral), optional q/k/v/o and MLP biases, no sliding window."""
    lacks = _decoder_basics(s) + _default_scale(s)
    if s.norm != "rms":
        lacks.append(f"{s.norm} norm (the builder uses RMSNorm)")
    if s.block != "sequential":
        lacks.append(f"{s.block} block")
    if s.position != "rotary":
        lacks.append(f"{s.position} positions (the builder uses rotary)")
    elif s.rotary_dim != s.head_dim:
        lacks.append(f"partial rotary ({s.rotary_dim} of {s.head_dim})")
    elif s.rotary.get("scaling", "none") not in ("none", "linear"):
        lacks.append(f"rotary scaling {s.rotary['scaling']}")
    if not s.gated or s.act != "silu":
        lacks.append(f"{'gated ' if s.gated else ''}{s.act} MLP (the builder uses SwiGLU)")
    if s.window:
        lacks.append(f"sliding window {s.window} (the llama builder applies none)")
    if s.embedding_norm:
        lacks.append("an embedding norm")
    if s.lm_head_bias:
        lacks.append("an LM head bias")
    if s.latent is not None:
        lacks.append("latent attention")
    if s.moe is not None:
        m = s.moe
        if m.scoring != "softmax" or not m.normalize or m.scaling != 1.0 or m.n_group != 1:
            lacks.append("router other than softmax top-k with renormalised weights")
        if m.shared_ffn or m.first_dense:
            lacks.append("shared experts or leading dense layers")
    return lacks


ARCHS: tuple[Arch, ...] = (Arch("LLAMA", "norm", _llama_lacks, _llama_keys),)


def choose(s: Structure, graph_name: str) -> Arch:
    """The first architecture whose builder computes `s` (CodegenError listing why not)."""
    reasons = {}
    for arch in ARCHS:
        lacks = arch.lacks(s)
        if not lacks:
            return arch
        reasons[arch.gguf_name] = lacks
    text = "; ".join(f"{name}: {', '.join(lacks)}" for name, lacks in reasons.items())
    raise CodegenError(
        f"no llama.cpp architecture computes this graph ({text})",
        where=f"target gguf, graph {graph_name!r}",
    )


__all__ = ["ARCHS", "LAYER_TENSORS", "MODEL_TENSORS", "Arch", "choose"]
