"""GGUF metadata -> ModelConfig, one row per llama.cpp architecture the importer maps.

A row reads the architecture's hyperparameter keys (`{arch}.embedding_length`, ...) as the
GGUF writer (`codegen/gguf/archs.py`) and llama.cpp's converter write them, and says how the
file's tensors map back: which rotary layout its builder uses (so the q/k rows are put back in
the IR's rotate-half order) and which tensors it requires. An `{arch}.` key the row does not
read is refused by name rather than ignored: it may change what the model computes (a rope
scaling, a sliding window). `general.*` keys describe the file, not the model, and are
skipped; `tokenizer.*` keys are the tokenizer's (tokenizer.py).

Architectures without a row (gptneox, falcon, bloom, gpt2, starcoder, deepseek2 are written by
irgraph but not read back yet) are refused by name, with the list of those that are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from irgraph.errors import ConfigError
from irgraph.model_zoo.config import (
    Activation,
    Block,
    ModelConfig,
    MoeConfig,
    Norm,
    Position,
    RopeScaling,
    RotaryConfig,
)


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
    biases: frozenset[str]  # roles with a bias tensor ("attn.q", "mlp.up", ...)
    untied: bool  # an output.weight tensor


@dataclass(frozen=True)
class Row:
    name: str  # general.architecture
    rope: str  # "norm": llama.cpp rotates pairs (2i, 2i+1); the rows go back to rotate-half
    config: Callable[[Meta, str, Dims], ModelConfig]


def _rotary(m: Meta, head_dim: int) -> RotaryConfig:
    dims = m.int("rope.dimension_count", head_dim)
    if dims != head_dim:
        raise ConfigError(
            f"partial rotary ({dims} of {head_dim} features): the llama builder rotates all",
            where=m.where,
        )
    scaling = m.get("rope.scaling.type", "none")
    factor = m.float("rope.scaling.factor", 1.0)
    if scaling not in ("none", "linear") or (scaling == "none" and factor not in (0.0, 1.0)):
        raise ConfigError(
            f"rope scaling {scaling!r} is not imported", expected="none | linear", where=m.where
        )
    linear = scaling == "linear"
    return RotaryConfig(
        base=m.float("rope.freq_base", 10000.0),
        scaling=RopeScaling.LINEAR if linear else RopeScaling.NONE,
        factor=factor if linear else 1.0,
    )


def _llama(m: Meta, name: str, d: Dims) -> ModelConfig:
    """src/models/llama.cpp: RMS pre-norm, rotary (NORM pairs), SwiGLU or Mixtral's experts."""
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
    experts, used = m.int("expert_count", 0), m.int("expert_used_count", 0)
    vocab = m.int("vocab_size", d.vocab)
    if vocab != d.vocab:
        raise ConfigError(
            f"{m.prefix}vocab_size disagrees with token_embd's rows",
            expected=d.vocab,
            got=vocab,
            where=m.where,
        )
    qkv = {"attn.q", "attn.k", "attn.v"}
    return ModelConfig(
        name=name,
        vocab_size=d.vocab,
        hidden=hidden,
        layers=m.int("block_count"),
        heads=heads,
        kv_heads=m.int("attention.head_count_kv", heads),
        head_dim=head_dim if head_dim * heads != hidden else 0,
        ffn=m.int("feed_forward_length"),
        norm=Norm.RMS,
        norm_eps=m.float("attention.layer_norm_rms_epsilon", 1e-5),
        position=Position.ROTARY,
        rotary=_rotary(m, head_dim),
        max_position=m.int("context_length", 2048),
        activation=Activation.SILU,
        gated_mlp=True,
        block=Block.SEQUENTIAL,
        qkv_bias=bool(d.biases & qkv),
        out_bias="attn.o" in d.biases,
        mlp_bias=bool(d.biases & {"mlp.up", "mlp.gate", "mlp.down"}),
        tied_embeddings=not d.untied,
        moe=MoeConfig(num_experts=experts, top_k=used, expert_ffn=d.expert_ffn)
        if experts
        else None,
    )


ROWS = {r.name: r for r in (Row("llama", "norm", _llama),)}


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
