"""llama.cpp architectures, one row each: what structure its graph builder computes, and its keys.

`choose(structure)` returns the first row whose builder computes exactly the graph's structure;
when none does, the CodegenError lists, per row, what the graph has that its builder lacks
(read against the pinned llama.cpp's `src/models/<arch>.cpp`; see docs in the row comments).
The weights' GGUF names come from gguf-py's tables (`gguf.TENSOR_NAMES`), keyed by the IR's
parameter roles (`irgraph.gguf_names`, shared with the GGUF importer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from irgraph.codegen.gguf.structure import Structure
from irgraph.errors import CodegenError
from irgraph.gguf_names import LAYER_TENSORS, MODEL_TENSORS

Demands = Callable[[Structure], list[str]]


@dataclass(frozen=True)
class Arch:
    """One llama.cpp architecture: its gguf-py name, rotary layout and what its builder computes."""

    name: str  # gguf MODEL_ARCH member, e.g. "LLAMA"
    rope: str  # "norm": pairs (2i, 2i+1); "neox": pairs (i, i+d/2); "": no rotary
    lacks: Demands  # what in `structure` this builder does not compute ([] = fits)
    keys: Callable[[Any, Structure], None]  # writes the architecture's hyperparameter keys
    fused_qkv: bool = False  # the builder reads one ATTN_QKV tensor (q, k, v rows stacked)
    # Biases the builder requires: written as zeros where the graph has none (same numbers).
    # Roles as in LAYER_TENSORS / MODEL_TENSORS; "attn.q" etc. take their weight's row count.
    zero_biases: tuple[str, ...] = ()
    untie: bool = False  # the builder requires an OUTPUT tensor: a tied head is written twice
    roles: Callable[[Structure], dict[str, str]] = lambda s: {}  # role -> MODEL_TENSOR override

    @property
    def gguf_name(self) -> str:
        import gguf

        return str(gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, self.name)])


def _common_keys(w: Any, s: Structure, head_dims: bool = True) -> None:
    w.add_context_length(s.max_position or 2048)
    w.add_embedding_length(s.hidden)
    w.add_block_count(s.layers)
    w.add_feed_forward_length(s.ffn)
    w.add_head_count(s.heads)
    w.add_head_count_kv(s.kv_heads)
    w.add_vocab_size(s.vocab)
    if head_dims and s.head_dim * s.heads != s.hidden:
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
    """src/models/llama.cpp: RMS pre-norm, sequential, full rotary (linear scaling, or LLaMA-3's
    through a rope_freqs tensor), SwiGLU (or softmax-routed SwiGLU experts, Mixtral), optional
    q/k/v/o and MLP biases, no sliding window."""
    lacks = _decoder_basics(s) + _default_scale(s)
    if s.norm != "rms":
        lacks.append(f"{s.norm} norm (the builder uses RMSNorm)")
    if s.block != "sequential":
        lacks.append(f"{s.block} block")
    if s.position != "rotary":
        lacks.append(f"{s.position} positions (the builder uses rotary)")
    elif s.rotary_dim != s.head_dim:
        lacks.append(f"partial rotary ({s.rotary_dim} of {s.head_dim})")
    elif s.rotary.get("scaling", "none") not in ("none", "linear", "llama3"):
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


def _layer_norm_keys(w: Any, s: Structure) -> None:
    _common_keys(w, s)
    w.add_layer_norm_eps(s.norm_eps)


def _neox_keys(w: Any, s: Structure) -> None:
    _layer_norm_keys(w, s)
    _rope_keys(w, s)
    w.add_parallel_residual(s.block == "parallel_two_norms")


def _falcon_keys(w: Any, s: Structure) -> None:
    _layer_norm_keys(w, s)
    _rope_keys(w, s)


GELU = ("gelu", "gelu_tanh")  # ggml_gelu: tanh-approximate, through an f16 table on CPU


def _gelu_layer_norm(s: Structure, arch: str) -> list[str]:
    """What every GELU / LayerNorm builder here (GPT-2 family, NeoX, BLOOM, Falcon) lacks."""
    lacks = _decoder_basics(s) + _default_scale(s)
    if s.norm != "layer":
        lacks.append(f"{s.norm} norm (the {arch} builder uses LayerNorm)")
    if s.gated or s.act not in GELU:
        lacks.append(f"{'gated ' if s.gated else ''}{s.act} MLP (the {arch} builder uses GELU)")
    if s.window:
        lacks.append(f"sliding window {s.window} (the {arch} builder applies none)")
    if s.lm_head_bias:
        lacks.append("an LM head bias")
    if s.moe is not None or s.latent is not None:
        lacks.append("routed experts" if s.moe is not None else "latent attention")
    return lacks


def _rotary_ok(s: Structure) -> list[str]:
    if s.position != "rotary":
        return [f"{s.position} positions (the builder uses rotary)"]
    if s.rotary.get("scaling", "none") not in ("none", "linear"):
        return [f"rotary scaling {s.rotary['scaling']}"]
    return []


def _neox_lacks(s: Structure) -> list[str]:
    """src/models/gptneox.cpp: LayerNorm, parallel two-norm (use_parallel_residual) or
    sequential block, NEOX (rotate-half) rope, partial rotary allowed, GELU MLP, biases."""
    lacks = _gelu_layer_norm(s, "gptneox") + _rotary_ok(s)
    if s.block not in ("parallel_two_norms", "sequential"):
        lacks.append(f"{s.block} block")
    if s.embedding_norm:
        lacks.append("an embedding norm")
    return lacks


def _falcon_lacks(s: Structure) -> list[str]:
    """src/models/falcon.cpp: LayerNorm, parallel block with one norm (7B) or two (40B:
    attn_norm_2 for attention), NEOX rope over the whole head (llama.cpp's loader refuses a
    Falcon n_rot other than the head width), GELU MLP, no projection biases."""
    lacks = _gelu_layer_norm(s, "falcon") + _rotary_ok(s)
    if s.position == "rotary" and s.rotary_dim != s.head_dim:
        lacks.append(f"partial rotary ({s.rotary_dim} of {s.head_dim})")
    if s.block not in ("parallel", "parallel_two_norms"):
        lacks.append(f"{s.block} block")
    if s.qkv_bias or s.out_bias or s.mlp_bias:
        lacks.append("projection biases")
    if s.embedding_norm:
        lacks.append("an embedding norm")
    return lacks


def _falcon_roles(s: Structure) -> dict[str, str]:
    # Falcon-40B: the attention reads attn_norm_2, the MLP reads attn_norm
    if s.block == "parallel_two_norms":
        return {"attn_norm": "ATTN_NORM_2", "mlp_norm": "ATTN_NORM"}
    return {}


def _bloom_lacks(s: Structure) -> list[str]:
    """src/models/bloom.cpp: LayerNorm after the embedding, ALiBi (max bias 8), sequential,
    GELU MLP, biases."""
    lacks = _gelu_layer_norm(s, "bloom")
    if s.position != "alibi":
        lacks.append(f"{s.position} positions (the builder uses ALiBi)")
    if s.block != "sequential":
        lacks.append(f"{s.block} block")
    if not s.embedding_norm:
        lacks.append("no embedding norm (the builder norms the embeddings)")
    return lacks


def _learned_lacks(s: Structure, arch: str) -> list[str]:
    lacks = _gelu_layer_norm(s, arch)
    if s.position != "learned":
        lacks.append(f"{s.position} positions (the builder uses a learned table)")
    if s.block != "sequential":
        lacks.append(f"{s.block} block")
    if s.embedding_norm:
        lacks.append("an embedding norm")
    return lacks


def _gpt2_lacks(s: Structure) -> list[str]:
    """src/models/gpt2.cpp: GPT-2 / GPT-3 form: learned positions, LayerNorm, GELU, biases;
    the same builder as StarCoder's, which this row leaves the grouped-KV graphs to."""
    lacks = _learned_lacks(s, "gpt2")
    if s.kv_heads != s.heads:
        lacks.append(f"{s.kv_heads} KV heads for {s.heads} (gpt_bigcode's form)")
    return lacks


def _starcoder_lacks(s: Structure) -> list[str]:
    """src/models/starcoder.cpp (gpt_bigcode): GPT-2's form with multi-query attention."""
    lacks = _learned_lacks(s, "starcoder")
    if s.kv_heads == s.heads:
        lacks.append("as many KV heads as query heads (GPT-2's form)")
    return lacks


def _deepseek2_keys(w: Any, s: Structure) -> None:
    import gguf

    latent, moe = s.latent, s.moe
    if latent is None or moe is None:  # _deepseek2_lacks refused it
        return
    _common_keys(w, s, head_dims=False)
    w.add_key_length(latent.nope_dim + latent.rope_dim)  # the decompressed (non-MLA) heads
    w.add_value_length(latent.v_dim)
    w.add_layer_norm_rms_eps(s.norm_eps)
    w.add_rope_dimension_count(latent.rope_dim)
    w.add_rope_freq_base(float(s.rotary["base"]))
    if s.rotary.get("scaling") == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(s.rotary["factor"]))
        w.add_rope_scaling_orig_ctx_len(int(s.rotary["original_max_position"]))
        # llama.cpp divides this by 0.1 as it reads it (convert_hf_to_gguf writes 0.1 * it)
        w.add_rope_scaling_yarn_log_mul(0.1 * float(s.rotary["mscale_all_dim"]))
    w.add_q_lora_rank(latent.q_rank)
    w.add_kv_lora_rank(latent.kv_rank)
    w.add_leading_dense_block_count(moe.first_dense)
    w.add_expert_feed_forward_length(moe.expert_ffn)
    w.add_expert_count(moe.experts)
    w.add_expert_used_count(moe.top_k)
    w.add_expert_shared_count(moe.shared_ffn // moe.expert_ffn)
    w.add_expert_weights_scale(moe.scaling)
    w.add_expert_weights_norm(moe.normalize)
    w.add_expert_gating_func(
        gguf.ExpertGatingFuncType.SOFTMAX
        if moe.scoring == "softmax"
        else gguf.ExpertGatingFuncType.SIGMOID
    )


def _deepseek2_lacks(s: Structure) -> list[str]:
    """src/models/deepseek2.cpp (non-MLA-cache path, attn_kv_b): RMS pre-norm, latent
    attention with interleaved (NORM) rope on its rope part, YaRN with mscale = mscale_all_dim
    (llama.cpp assumes it), leading dense SwiGLU layers then routed SwiGLU experts with shared
    experts; groups of experts ranked by their top-two sum only (DeepSeek-V3's rule)."""
    lacks = _decoder_basics(s)
    if s.latent is None:
        return [*lacks, "no latent attention"]
    if s.moe is None:
        lacks.append("no routed experts")
    elif s.moe.n_group > 1:
        lacks.append(
            f"group-limited routing over {s.moe.n_group} groups scored by their best expert "
            "(llama.cpp scores a group by its top two)"
        )
    elif s.moe.shared_ffn % s.moe.expert_ffn:
        lacks.append("shared experts narrower than whole routed experts")
    if s.norm != "rms" or s.block != "sequential" or not s.gated or s.act != "silu":
        lacks.append(f"{s.norm} norm, {s.block} block, {s.act} MLP (the builder: RMS, SwiGLU)")
    if not s.rotary or not s.rotary.get("interleaved"):
        lacks.append("rotate-half rope on the latent rope part")
    scaling = s.rotary.get("scaling", "none")
    scale = (s.latent.nope_dim + s.latent.rope_dim) ** -0.5
    if scaling == "yarn":
        if s.rotary["mscale"] != s.rotary["mscale_all_dim"] or s.rotary.get("attention_factor"):
            lacks.append("YaRN mscale differing from mscale_all_dim")
        if (s.rotary["beta_fast"], s.rotary["beta_slow"]) != (32.0, 1.0):
            lacks.append("YaRN betas other than 32 / 1")
        from irgraph.ops.rotary import yarn_mscale

        scale *= yarn_mscale(float(s.rotary["factor"]), float(s.rotary["mscale_all_dim"])) ** 2
    elif scaling != "none":
        lacks.append(f"rotary scaling {scaling}")
    if s.attn_scale is not None and not math.isclose(s.attn_scale, scale, rel_tol=1e-6):
        lacks.append(f"attention scale {s.attn_scale:g} (the builder uses {scale:g})")
    return lacks


ALL_BIASES = (
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.o",
    "mlp.up",
    "mlp.down",
    "attn_norm",
    "mlp_norm",
    "norm",
)

ARCHS: tuple[Arch, ...] = (
    Arch("LLAMA", "norm", _llama_lacks, _llama_keys),
    Arch("DEEPSEEK2", "norm", _deepseek2_lacks, _deepseek2_keys),
    Arch(
        "GPTNEOX",
        "neox",
        _neox_lacks,
        _neox_keys,
        fused_qkv=True,
        zero_biases=ALL_BIASES,
        untie=True,
    ),
    Arch(
        "FALCON",
        "neox",
        _falcon_lacks,
        _falcon_keys,
        fused_qkv=True,
        zero_biases=("attn_norm", "mlp_norm", "norm"),
        roles=_falcon_roles,
    ),
    Arch(
        "BLOOM",
        "",
        _bloom_lacks,
        _layer_norm_keys,
        fused_qkv=True,
        zero_biases=(*ALL_BIASES, "embed_norm"),
    ),
    Arch("GPT2", "", _gpt2_lacks, _layer_norm_keys, fused_qkv=True, zero_biases=ALL_BIASES),
    Arch(
        "STARCODER", "", _starcoder_lacks, _layer_norm_keys, fused_qkv=True, zero_biases=ALL_BIASES
    ),
)


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
