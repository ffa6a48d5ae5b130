"""GGUF metadata -> ModelConfig, one row per llama.cpp architecture the importer maps.

A row reads the architecture's hyperparameter keys (`{arch}.embedding_length`, ...) as the
GGUF writer (`codegen/gguf/archs.py`) and llama.cpp's converter write them, and says how the
file's tensors map back: which rotary layout its builder uses (so the q/k rows are put back in
the IR's rotate-half order) and which tensors it requires. An `{arch}.` key the row does not
read is refused by name rather than ignored: it may change what the model computes (a rope
scaling, a sliding window). `general.*` keys describe the file, not the model, and are
skipped; `tokenizer.*` keys are the tokenizer's (tokenizer.py).

Rows: every architecture the GGUF writer maps (llama, deepseek2, gptneox, falcon, bloom, gpt2,
starcoder); others are refused by name, with the list of those that are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from irgraph.errors import ConfigError
from irgraph.model_zoo.config import (
    Activation,
    Block,
    MlaConfig,
    ModelConfig,
    MoeConfig,
    Norm,
    Position,
    RopeScaling,
    RotaryConfig,
)
from irgraph.model_zoo.gguf_import.rope_freqs import llama3_scaling


class Meta:
    """The `{arch}.` keys of one file, each read at most once; what is left is unknown."""

    def __init__(self, meta: Mapping[str, Any], arch: str, where: str):
        self.prefix, self.where = f"{arch}.", where
        self.keys = {k[len(self.prefix) :]: v for k, v in meta.items() if k.startswith(self.prefix)}
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self.keys.get(key, default)

    def int(self, key: str, default: int | None = None) -> int:
        value = self.get(key, default)
        if value is None:
            raise ConfigError(f"missing metadata key {self.prefix}{key}", where=self.where)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"metadata key {self.prefix}{key} must be a non-negative integer",
                got=value,
                where=self.where,
            )
        return value

    def float(self, key: str, default: float) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(
                f"metadata key {self.prefix}{key} must be a number", got=value, where=self.where
            )
        return float(value)

    def check_all_read(self) -> None:
        unknown = sorted(set(self.keys) - self.read)
        if unknown:
            raise ConfigError(
                "metadata keys the importer does not understand (they may change what the "
                "model computes)",
                got=", ".join(self.prefix + k for k in unknown[:6]),
                where=self.where,
            )


@dataclass(frozen=True)
class Dims:
    """What the tensors say: vocabulary rows, expert MLP width, biases, a separate head."""

    vocab: int
    expert_ffn: int
    biases: frozenset[str]  # roles with a bias tensor ("attn.q", "mlp.up", "attn_norm", ...)
    untied: bool  # an output.weight tensor (other than the embedding's bytes)
    positions: int = 0  # rows of a learned position table (position_embd), 0 = none
    embed_norm: bool = False  # a token_embd_norm tensor (BLOOM)
    attn_norm_2: bool = False  # a second block norm (Falcon-40B: the attention's)
    rope_freqs: tuple[float, ...] = ()  # LLaMA-3 scaling's per-pair divisors (rope_freqs)


@dataclass(frozen=True)
class Row:
    name: str  # general.architecture
    # the builder's rotary pairs: "norm" (2i, 2i+1), whose q/k rows go back to rotate-half
    # unless the model's rotary is interleaved itself; "neox" (i, i+d/2), the IR's; "" none
    rope: str
    config: Callable[[Meta, str, Dims], ModelConfig]
    fused_qkv: bool = False  # one attn_qkv tensor per block, split back into q, k and v
    roles: Callable[[Dims], dict[str, str]] = lambda d: {}  # role -> MODEL_TENSOR override
    rope_freqs: bool = False  # reads LLaMA-3 scaling from a rope_freqs tensor


def _heads(m: Meta, d: Dims) -> tuple[int, int, int, int]:
    """(hidden, heads, KV heads, head width) of the common attention keys, vocab checked."""
    hidden, heads = m.int("embedding_length"), m.int("attention.head_count")
    if heads == 0 or (hidden % heads and "attention.key_length" not in m.keys):
        raise ConfigError(
            f"{m.prefix}attention.head_count must divide {m.prefix}embedding_length ({hidden}) "
            f"unless {m.prefix}attention.key_length states the head width",
            got=heads,
            where=m.where,
        )
    head_dim = m.int("attention.key_length", hidden // heads)
    if m.int("attention.value_length", head_dim) != head_dim:
        raise ConfigError("key and value head widths differ", where=m.where)
    vocab = m.int("vocab_size", d.vocab)
    if vocab != d.vocab:
        raise ConfigError(
            f"{m.prefix}vocab_size disagrees with token_embd's rows",
            expected=d.vocab,
            got=vocab,
            where=m.where,
        )
    return hidden, heads, m.int("attention.head_count_kv", heads), head_dim


def _common(m: Meta, name: str, d: Dims) -> dict[str, Any]:
    """The ModelConfig fields every decoder row reads alike."""
    hidden, heads, kv_heads, head_dim = _heads(m, d)
    return dict(
        name=name,
        vocab_size=d.vocab,
        hidden=hidden,
        layers=m.int("block_count"),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim if head_dim * heads != hidden else 0,
        ffn=m.int("feed_forward_length"),
        qkv_bias=bool(d.biases & {"attn.q", "attn.k", "attn.v"}),
        out_bias="attn.o" in d.biases,
        mlp_bias=bool(d.biases & {"mlp.up", "mlp.gate", "mlp.down"}),
        tied_embeddings=not d.untied,
        block=Block.SEQUENTIAL,
    )


def _rotary(m: Meta, head_dim: int, d: Dims, partial: bool = False) -> RotaryConfig:
    dims = m.int("rope.dimension_count", head_dim)
    if dims > head_dim or dims % 2 or (dims != head_dim and not partial):
        raise ConfigError(
            f"rotary over {dims} of {head_dim} features: the builder rotates "
            + ("an even number of them" if partial else "all of them"),
            where=m.where,
        )
    scaling = m.get("rope.scaling.type", "none")
    factor = m.float("rope.scaling.factor", 1.0)
    if scaling not in ("none", "linear") or (scaling == "none" and factor not in (0.0, 1.0)):
        raise ConfigError(
            f"rope scaling {scaling!r} is not imported", expected="none | linear", where=m.where
        )
    linear = scaling == "linear"
    if d.rope_freqs:
        if scaling != "none":
            raise ConfigError(
                f"a rope_freqs tensor and {m.prefix}rope.scaling.type {scaling!r}: two scalings",
                where=m.where,
            )
        base = m.float("rope.freq_base", 10000.0)
        fields = llama3_scaling(np.array(d.rope_freqs), dims, base, m.where)
        return RotaryConfig(**{**fields, "scaling": RopeScaling.LLAMA3, "base": base})
    return RotaryConfig(
        fraction=dims / head_dim,
        base=m.float("rope.freq_base", 10000.0),
        scaling=RopeScaling.LINEAR if linear else RopeScaling.NONE,
        factor=factor if linear else 1.0,
    )


def _llama(m: Meta, name: str, d: Dims) -> ModelConfig:
    """src/models/llama.cpp: RMS pre-norm, rotary (NORM pairs), SwiGLU or Mixtral's experts."""
    c = _common(m, name, d)
    experts, used = m.int("expert_count", 0), m.int("expert_used_count", 0)
    return ModelConfig(
        **c,
        norm=Norm.RMS,
        norm_eps=m.float("attention.layer_norm_rms_epsilon", 1e-5),
        position=Position.ROTARY,
        rotary=_rotary(m, _heads(m, d)[3], d),
        max_position=m.int("context_length", 2048),
        activation=Activation.SILU,
        gated_mlp=True,
        moe=MoeConfig(num_experts=experts, top_k=used, expert_ffn=d.expert_ffn)
        if experts
        else None,
    )


def _layer_norm(m: Meta, name: str, d: Dims, **fields: Any) -> ModelConfig:
    """The GELU / LayerNorm builders (GPT-2, StarCoder, BLOOM, GPT-NeoX, Falcon): ggml_gelu is
    the tanh approximation; norms carry biases where the file has them."""
    c = _common(m, name, d)
    c.update(fields)
    return ModelConfig(
        **c,
        norm=Norm.LAYER,
        norm_eps=m.float("attention.layer_norm_epsilon", 1e-5),
        norm_bias=bool(d.biases & {"attn_norm", "mlp_norm", "norm", "embed_norm"}),
        activation=Activation.GELU_TANH,
        gated_mlp=False,
    )


def _gptneox(m: Meta, name: str, d: Dims) -> ModelConfig:
    """src/models/gptneox.cpp: parallel two-norm (use_parallel_residual) or sequential block,
    NEOX rope over rope.dimension_count features, GELU MLP."""
    head_dim = _heads(m, d)[3]
    parallel = m.get("use_parallel_residual", True)
    return _layer_norm(
        m,
        name,
        d,
        block=Block.PARALLEL_TWO_NORMS if parallel else Block.SEQUENTIAL,
        position=Position.ROTARY,
        rotary=_rotary(m, head_dim, d, partial=True),
        max_position=m.int("context_length", 2048),
    )


def _falcon(m: Meta, name: str, d: Dims) -> ModelConfig:
    """src/models/falcon.cpp: parallel block with one norm (7B) or two (40B: attn_norm_2 is
    the attention's), NEOX rope over the whole head, GELU MLP."""
    head_dim = _heads(m, d)[3]
    return _layer_norm(
        m,
        name,
        d,
        block=Block.PARALLEL_TWO_NORMS if d.attn_norm_2 else Block.PARALLEL,
        position=Position.ROTARY,
        rotary=_rotary(m, head_dim, d),
        max_position=m.int("context_length", 2048),
    )


def _falcon_roles(d: Dims) -> dict[str, str]:
    return {"attn_norm": "ATTN_NORM_2", "mlp_norm": "ATTN_NORM"} if d.attn_norm_2 else {}


ALIBI_MAX_BIAS = 8.0  # the IR's ALiBi slopes 2^(-8 i / heads); llama.cpp's BLOOM sets 8 too


def _bloom(m: Meta, name: str, d: Dims) -> ModelConfig:
    """src/models/bloom.cpp: LayerNorm after the embedding, ALiBi, sequential, GELU MLP."""
    bias = m.float("attention.max_alibi_bias", ALIBI_MAX_BIAS)
    if bias != ALIBI_MAX_BIAS:
        raise ConfigError(
            f"{m.prefix}attention.max_alibi_bias: the IR's ALiBi slopes use 8",
            expected=ALIBI_MAX_BIAS,
            got=bias,
            where=m.where,
        )
    if not d.embed_norm:
        raise ConfigError(
            "no token_embd_norm tensor (the bloom builder norms the embeddings)", where=m.where
        )
    return _layer_norm(
        m,
        name,
        d,
        position=Position.ALIBI,
        embedding_norm=True,
        max_position=m.int("context_length", 2048),
    )


def _learned(m: Meta, name: str, d: Dims) -> ModelConfig:
    """src/models/gpt2.cpp and starcoder.cpp: learned positions, LayerNorm, GELU MLP."""
    if not d.positions:
        raise ConfigError(
            "no position_embd tensor (the builder adds learned positions)", where=m.where
        )
    context = m.int("context_length", d.positions)
    if context > d.positions:
        raise ConfigError(
            f"{m.prefix}context_length exceeds the position table's rows",
            expected=f"<= {d.positions}",
            got=context,
            where=m.where,
        )
    return _layer_norm(m, name, d, position=Position.LEARNED, max_position=d.positions)


GATING = {1: "softmax", 2: "sigmoid"}  # llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE_*


def _yarn_mscale(m: Meta) -> float:
    """mscale_all_dim from rope.scaling.yarn_log_multiplier (0.1 · it, as the converter and
    irgraph's writer store it), as the shortest float32 decimal: the writer's 0.707, not
    0.7069999..."""
    log_mul = m.float("rope.scaling.yarn_log_multiplier", 0.0)
    return float(str(np.float32(log_mul / 0.1)))


def _deepseek2(m: Meta, name: str, d: Dims) -> ModelConfig:
    """src/models/deepseek2.cpp, non-MLA cache path (attn_kv_b): RMS pre-norm, latent
    attention with interleaved rope on its rope part, YaRN with mscale = mscale_all_dim,
    leading dense SwiGLU layers, then softmax- or sigmoid-routed experts with shared ones."""
    hidden, heads = m.int("embedding_length"), m.int("attention.head_count")
    if m.int("attention.head_count_kv", heads) != heads:
        raise ConfigError("latent attention expands keys and values for every head", where=m.where)
    rope_dim = m.int("rope.dimension_count")
    key, value = m.int("attention.key_length"), m.int("attention.value_length")
    if key <= rope_dim:
        raise ConfigError(
            f"{m.prefix}attention.key_length must exceed the rotated part",
            expected=f"> {rope_dim}",
            got=key,
            where=m.where,
        )
    for k in ("expert_group_count", "expert_group_used_count"):
        if m.int(k, 1) != 1:
            raise ConfigError(
                f"{m.prefix}{k}: llama.cpp ranks groups of experts by their top-two sum, a rule "
                "the IR's router does not have",
                expected=1,
                got=m.int(k),
                where=m.where,
            )
    gating = m.int("expert_gating_func", 1)
    if gating not in GATING:
        raise ConfigError(
            f"{m.prefix}expert_gating_func",
            expected="1 (softmax) | 2 (sigmoid)",
            got=gating,
            where=m.where,
        )
    scaling = m.get("rope.scaling.type", "none")
    if scaling not in ("none", "yarn"):
        raise ConfigError(
            f"rope scaling {scaling!r} is not imported", expected="none | yarn", where=m.where
        )
    if scaling == "yarn":
        mscale = _yarn_mscale(m)
        rotary = RotaryConfig(
            interleaved=True,
            base=m.float("rope.freq_base", 10000.0),
            scaling=RopeScaling.YARN,
            factor=m.float("rope.scaling.factor", 1.0),
            original_max_position=m.int("rope.scaling.original_context_length"),
            mscale=mscale,
            mscale_all_dim=mscale,
        )
    else:
        rotary = RotaryConfig(interleaved=True, base=m.float("rope.freq_base", 10000.0))
    vocab = m.int("vocab_size", d.vocab)
    if vocab != d.vocab:
        raise ConfigError(
            f"{m.prefix}vocab_size disagrees with token_embd's rows",
            expected=d.vocab,
            got=vocab,
            where=m.where,
        )
    return ModelConfig(
        name=name,
        vocab_size=d.vocab,
        hidden=hidden,
        layers=m.int("block_count"),
        heads=heads,
        ffn=m.int("feed_forward_length"),
        norm=Norm.RMS,
        norm_eps=m.float("attention.layer_norm_rms_epsilon", 1e-6),
        position=Position.ROTARY,
        rotary=rotary,
        max_position=m.int("context_length", 2048),
        activation=Activation.SILU,
        gated_mlp=True,
        tied_embeddings=not d.untied,
        moe=MoeConfig(
            num_experts=m.int("expert_count"),
            top_k=m.int("expert_used_count"),
            expert_ffn=m.int("expert_feed_forward_length"),
            first_dense=m.int("leading_dense_block_count", 0),
            shared_experts=m.int("expert_shared_count", 0),
            scoring=GATING[gating],
            normalize=bool(m.get("expert_weights_norm", False)),
            scaling=m.float("expert_weights_scale", 1.0),
        ),
        mla=MlaConfig(
            kv_rank=m.int("attention.kv_lora_rank"),
            q_rank=m.int("attention.q_lora_rank", 0),
            nope_dim=key - rope_dim,
            rope_dim=rope_dim,
            v_dim=value,
        ),
    )


ROWS = {
    r.name: r
    for r in (
        Row("llama", "norm", _llama, rope_freqs=True),
        Row("deepseek2", "norm", _deepseek2),
        Row("gptneox", "neox", _gptneox, fused_qkv=True),
        Row("falcon", "neox", _falcon, fused_qkv=True, roles=_falcon_roles),
        Row("bloom", "", _bloom, fused_qkv=True),
        Row("gpt2", "", _learned, fused_qkv=True),
        Row("starcoder", "", _learned, fused_qkv=True),
    )
}


def row(arch: str, where: str) -> Row:
    """The row of `arch` (ConfigError naming it and the architectures that are imported)."""
    if arch not in ROWS:
        raise ConfigError(
            f"architecture {arch!r} is not imported from GGUF",
            expected=" | ".join(ROWS),
            where=where,
        )
    return ROWS[arch]


def model_config(
    arch: str, meta: Mapping[str, Any], name: str, dims: Dims, where: str, tokens: Mapping[str, int]
) -> ModelConfig:
    """The validated ModelConfig of a file's metadata; `tokens`: bos/eos/pad ids it states."""
    m = Meta(meta, arch, where)
    config = row(arch, where).config(m, name, dims)
    m.check_all_read()
    return config.replace(**tokens).validate()


__all__ = ["ROWS", "Dims", "Row", "model_config", "row"]
