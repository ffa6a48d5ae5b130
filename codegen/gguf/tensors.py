"""The graph's weights as GGUF tensors: names, rotary row order, storage types, quantized blocks.

Storage types (`--dtype`, `--requantize`): 2-D and expert matrices take the compute dtype
(f32 | f16 | bf16); norms, biases and the router stay f32, as llama.cpp's converter keeps them.
A quantized IR weight whose form GGML has is repacked without touching a value:

    i4<g32,sym,f16> (also b3) -> q4_0: f16 d, 16 bytes: byte j = (q_j + 8) | (q_{j+16} + 8) << 4
    i8<g32,sym,f16>           -> q8_0: f16 d, 32 int8
    i4<g32,asym,f16>          -> q4_1: f16 d, f16 m = -(z + 8)·d, the nibbles as q4_0's
                                 (only where every m is exact in f16)

so gguf's (and llama.cpp's) dequantization d · (nibble - 8) or d · q is the IR's
float32(q) · float32(scale), bit for bit. Other quantized forms are refused unless
`requantize` names a GGML type: then the IR's dequantized weight is quantized once by gguf's
quantizer (`gguf.quants.quantize`, bit-exact with ggml's reference). A matrix whose rows are
not whole blocks falls back to f16 (f32 for f32 graphs), recorded in `fallbacks`.

Rotary: llama.cpp's NORM rope (LLaMA) rotates pairs (2i, 2i+1) and NEOX rope pairs (i, i+d/2);
the IR's `interleaved` attr says which its rotary uses. Where they differ, the q and k rows
(and biases) are permuted within each head so that the builder's rotation of the permuted
projection is the IR's rotation of the original, in the permuted order; q·k is unchanged, as
both are permuted alike (`convert_hf_to_gguf.py`'s `permute` for LLaMA).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from irgraph.codegen.gguf.archs import LAYER_TENSORS, MODEL_TENSORS, Arch
from irgraph.codegen.gguf.structure import Structure
from irgraph.dtypes import DType
from irgraph.errors import CodegenError
from irgraph.gguf_names import gguf_name, head_rows, rope_order
from irgraph.ir import Graph
from irgraph.quant import QuantSpec, unpack

QK = 32  # GGML's block width for q4_0, q4_1, q8_0, q5_*
REQUANTIZE = ("none", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")  # gguf-py's quantizer
# llama.cpp's own quantizer (llama_model_quantize) on an f32 file, LLAMA_FTYPE_MOSTLY_*: the
# k-quant mixes, and llama.cpp's q4_0 / q8_0 mixes ("llama-": output.weight kept at q6_K / q8_0,
# the file `llama-quantize model.gguf Q4_0` makes, unlike gguf-py's q4_0 on every matrix)
KQUANTS = {"q2_k": 10, "q3_k_m": 12, "q4_k_s": 14, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}
KQUANTS |= {"llama-q4_0": 2, "llama-q8_0": 7}


@dataclass
class Tensor:
    """One GGUF tensor: its name, its array (bytes for block types) and its GGML type name."""

    name: str
    array: np.ndarray
    ggml: str  # GGMLQuantizationType member name: F32, F16, BF16, Q4_0, ...


@dataclass
class Plan:
    tensors: list[Tensor] = field(default_factory=list)
    fallbacks: dict[str, str] = field(default_factory=dict)  # tensor -> why its type fell back


def _role(name: str) -> tuple[int | None, str, str] | None:
    """(layer, role, 'weight'|'bias') of an IR parameter name, or None."""
    stem, _, kind = name.rpartition(".")
    if kind not in ("weight", "bias"):
        stem, kind = name, "weight"  # expert stacks: layers.{i}.moe.experts.up
    if stem.startswith("layers."):
        _, layer, role = stem.split(".", 2)
        return (int(layer), role, kind) if role in LAYER_TENSORS else None
    return (None, stem, kind) if stem in MODEL_TENSORS else None


def _is_matrix(role: str, kind: str, shape: tuple[int, ...]) -> bool:
    return kind == "weight" and len(shape) >= 2 and role not in ("moe.router",)


def _repack(
    spec: QuantSpec, stored: dict[str, np.ndarray], shape: tuple[int, ...]
) -> Tensor | None:
    """The GGML block form of a quantized IR weight, bit-exact (None: GGML has no such form)."""
    *lead, k = shape
    if not (spec.group == QK and spec.scale_dtype is DType.f16 and k % QK == 0):
        return None
    if not spec.sym and spec.bits == 8:
        return None
    q = unpack(stored[""], spec)[..., :k].reshape(*lead, k // QK, QK)
    scales = np.asarray(stored[".scales"], dtype=np.float16).reshape(*lead, k // QK, 1)
    d = scales.view(np.uint8)
    if spec.bits == 8:
        blocks = np.concatenate([d, q.astype(np.int8).view(np.uint8)], axis=-1)
        return Tensor("", blocks.reshape(*lead, -1), "Q8_0")
    nib = (q.astype(np.int16) + 8).astype(np.uint8)  # q in [-8, 7] (b3: [-4, 3])
    packed = nib[..., : QK // 2] | (nib[..., QK // 2 :] << 4)
    if spec.sym:
        blocks = np.concatenate([d, packed], axis=-1)
        return Tensor("", blocks.reshape(*lead, -1), "Q4_0")
    # asymmetric: w = (q - z)·s = (q + 8)·s + m with m = -(z + 8)·s, exact in f32 (s has 11
    # significant bits, z + 8 at most 5); q4_1 stores m in f16, so it must be exact there too
    z = np.asarray(stored[".zero_points"], dtype=np.float32).reshape(*lead, k // QK, 1)
    m = -(z + 8) * scales.astype(np.float32)
    m16 = m.astype(np.float16)
    if not np.array_equal(m16.astype(np.float32), m):
        return None
    blocks = np.concatenate([d, m16.view(np.uint8), packed], axis=-1)
    return Tensor("", blocks.reshape(*lead, -1), "Q4_1")


def _convert(array: np.ndarray, ggml: str) -> np.ndarray:
    import gguf

    if ggml == "F32":
        return np.ascontiguousarray(array, dtype=np.float32)
    if ggml == "F16":
        return np.ascontiguousarray(array, dtype=np.float16)
    qtype = getattr(gguf.GGMLQuantizationType, ggml)
    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)


def _permute(t: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return t if rows is None else np.ascontiguousarray(t[rows])


def plan(graph: Graph, s: Structure, arch: Arch, dtype: str, requantize: str) -> Plan:
    """Every GGUF tensor of `graph` for `arch` (CodegenError before anything is written)."""
    result = Plan()
    compute = {"f32": "F32", "f16": "F16", "bf16": "BF16"}[dtype]
    rope_rows = _rope_rows(s, arch)
    roles = arch.roles(s)
    refused = []
    for name, value in graph.params.items():
        role = _role(name)
        if role is None:
            raise CodegenError(
                f"parameter {name!r} has no GGUF tensor role",
                expected=", ".join(
                    sorted(MODEL_TENSORS) + [f"layers.N.{r}" for r in LAYER_TENSORS]
                ),
                where=f"target gguf, graph {graph.name!r}",
            )
        layer, r, kind = role
        shape = tuple(int(d) for d in value.type.shape)  # type: ignore[arg-type]  # static
        rows = rope_rows.get(r)
        out = gguf_name(layer, r, kind, roles)
        spec = value.type.quant
        if spec is not None and requantize == "none":  # k-quants start from dequantized f32
            t = _repack(spec, graph.stored(name), shape)
            if t is None:
                refused.append(f"{name} ({value.type.dtype}<{spec}>)")
                continue
            t.name, t.array = out, _permute(t.array, rows)
            result.tensors.append(t)
            continue
        array = _permute(np.asarray(graph.weight(name), dtype=np.float32), rows)
        if not _is_matrix(r, kind, shape):
            result.tensors.append(Tensor(out, np.ascontiguousarray(array), "F32"))
            continue
        want = requantize.upper() if requantize in REQUANTIZE[1:] else compute
        if want not in ("F32", "F16", "BF16") and shape[-1] % QK:
            fallback = "F32" if compute == "F32" else "F16"
            result.fallbacks[out] = f"{shape[-1]} columns are not whole {QK}-blocks: {fallback}"
            want = fallback
        result.tensors.append(Tensor(out, _convert(array, want), want))
    if refused:
        raise CodegenError(
            "quantized weights have no GGML equivalent (q4_0 / q8_0 need symmetric groups of 32 "
            "with f16 scales, q4_1 asymmetric 4-bit ones whose -(z+8)·scale is exact in f16); "
            "pass --requantize q8_0|q4_0|... to quantize them again",
            got=", ".join(refused[:4]) + (", ..." if len(refused) > 4 else ""),
            where=f"target gguf, graph {graph.name!r}",
        )
    result.tensors += _zero_biases(graph, arch, roles)
    if s.rotary.get("scaling") == "llama3":
        result.tensors.append(_rope_freqs(s))
    if arch.untie and s.tied:
        embed = next(t for t in result.tensors if t.name == gguf_name(None, "embed", "weight"))
        result.tensors.append(Tensor(gguf_name(None, "lm_head", "weight"), embed.array, embed.ggml))
    if arch.fused_qkv:
        result.tensors = list(_fuse_qkv(result.tensors))
    return result


def _rope_freqs(s: Structure) -> Tensor:
    """LLaMA-3 rope scaling as llama.cpp reads it: per-pair divisors of the rotation angle,
    the plain inverse frequencies over the IR's scaled ones (`irgraph.ops.rotary`)."""
    import gguf

    from irgraph.ops.rotary import inv_frequencies

    keys = ("base", "original_max_position", "low_freq_factor", "high_freq_factor", "factor")
    plain = inv_frequencies(s.rotary_dim, float(s.rotary["base"]))
    scaled = inv_frequencies(s.rotary_dim, scaling="llama3", **{k: s.rotary[k] for k in keys})
    name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
    return Tensor(name, (plain / scaled).astype(np.float32), "F32")


def _zero_biases(graph: Graph, arch: Arch, roles: dict[str, str]) -> list[Tensor]:
    """Zeros for the biases `arch`'s builder requires and the graph lacks (the same numbers)."""
    zeros = []
    layers = sorted({int(n.split(".")[1]) for n in graph.params if n.startswith("layers.")})
    for role in arch.zero_biases:
        for layer in layers if role in LAYER_TENSORS else [None]:
            stem = role if layer is None else f"layers.{layer}.{role}"
            weight = graph.params.get(f"{stem}.weight")
            if weight is None or f"{stem}.bias" in graph.params:
                continue
            rows = int(weight.type.shape[0])  # type: ignore[arg-type]  # params are static
            zeros.append(
                Tensor(gguf_name(layer, role, "bias", roles), np.zeros(rows, np.float32), "F32")
            )
    return zeros


def _rope_rows(s: Structure, arch: Arch) -> dict[str, np.ndarray]:
    """Role -> row order for the q and k projections where the rotary layouts differ."""
    if not s.rotary or not arch.rope or bool(s.rotary.get("interleaved")) == (arch.rope == "norm"):
        return {}
    order = rope_order(s.head_dim, s.rotary_dim, to_interleaved=arch.rope == "norm")
    return {
        "attn.q": head_rows(s.heads, s.head_dim, order),
        "attn.k": head_rows(s.kv_heads, s.head_dim, order),
    }


def _fuse_qkv(tensors: list[Tensor]) -> Iterator[Tensor]:
    """q, k, v rows stacked into one attn_qkv tensor (the builders view it back at offsets)."""
    by_name = {t.name: t for t in tensors}
    done: set[str] = set()
    for t in tensors:
        if ".attn_q." not in t.name:
            if t.name not in done:
                yield t
            continue
        parts = [by_name[t.name.replace(".attn_q.", f".attn_{x}.")] for x in "qkv"]
        done.update(p.name for p in parts)
        if len({p.ggml for p in parts}) != 1:
            raise CodegenError(
                "q, k and v weights are stored in different types", got=[p.ggml for p in parts]
            )
        yield Tensor(
            t.name.replace(".attn_q.", ".attn_qkv."),
            np.concatenate([p.array for p in parts]),
            t.ggml,
        )


def write_tensors(writer: Any, tensors: list[Tensor]) -> None:
    import gguf

    for t in tensors:
        raw = getattr(gguf.GGMLQuantizationType, t.ggml) if t.array.dtype == np.uint8 else None
        writer.add_tensor(t.name, t.array, raw_dtype=raw)


__all__ = [
    "KQUANTS",
    "REQUANTIZE",
    "Plan",
    "Tensor",
    "gguf_name",
    "plan",
    "rope_order",
    "write_tensors",
]
