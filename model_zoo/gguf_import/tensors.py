"""GGUF tensors -> the IR's parameters: names, rotary row order, storage types, lazily.

Each GGUF tensor name is looked up in the inverse of `irgraph.gguf_names`' tables; a tensor
without a role, or a parameter without a tensor, is an error naming them. Storage:

    F32, F16, BF16              the parameter in that dtype, memory-mapped
    Q8_0, Q4_0, Q5_0, Q6_K,     the IR's quantized form, bit for bit (blocks.py)
    Q4_1 (integer zero points)
    anything else               refused, naming the tensors and their types, unless
                                `dequantize` is set: then gguf-py's dequantization, as f32 or f16

Norms, biases and routers (read in float by their ops) are dequantized if a file quantizes
them: the IR keeps only matrices that ops read in their stored dtype quantized.

Rotary: where llama.cpp's builder rotates (2i, 2i+1) pairs and the IR's rotary rotates
(i, i+d/2), the writer permuted the q and k rows within each head; here they are put back
(`argsort` of the writer's row order), so the import is the graph the writer started from.
Whole rows move, so quantized rows move with their scales, exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import ConfigError
from irgraph.gguf_names import (
    LAYER_TENSORS,
    MODEL_TENSORS,
    gguf_name,
    head_rows,
    ir_name,
    rope_order,
)
from irgraph.model_zoo.gguf_import.blocks import DATA_DEPENDENT, blocks_to_ir, exact_spec
from irgraph.quant import QuantSpec
from irgraph.weights import WeightStore

FLOATS = {"F32": DType.f32, "F16": DType.f16, "BF16": DType.bf16}
ROTATED = ("attn.q", "attn.k")  # the projections whose rows the writer permuted


def roles(
    layers: int, overrides: dict[str, str] | None = None
) -> dict[str, tuple[int | None, str, str]]:
    """GGUF tensor name -> (layer, role, 'weight' | 'bias') for a model of `layers` blocks
    (`overrides`: an architecture's role -> MODEL_TENSOR member, e.g. Falcon-40B's norms)."""
    table: dict[str, tuple[int | None, str, str]] = {}
    for kind in ("weight", "bias"):
        for role in MODEL_TENSORS:
            table[gguf_name(None, role, kind)] = (None, role, kind)
        for layer in range(layers):
            for role in LAYER_TENSORS:
                table[gguf_name(layer, role, kind, overrides)] = (layer, role, kind)
    return table


@dataclass(frozen=True)
class Param:
    """One IR parameter read from one GGUF tensor."""

    name: str  # IR parameter name
    tensor: Any  # gguf ReaderTensor
    shape: tuple[int, ...]  # logical, IR order
    rows: np.ndarray | None  # row order to apply (rotary), None = as stored
    quant: QuantSpec | None = None
    dtype: DType = DType.f32
    dequantized: str = ""  # why it was dequantized ("" = not)


@dataclass
class Plan:
    params: dict[str, Param] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # "tensor (TYPE)" without an exact form

    def dequantized(self) -> dict[str, str]:
        return {p.tensor.name: p.dequantized for p in self.params.values() if p.dequantized}


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in reversed(t.shape.tolist()))  # ggml ne0 first -> IR last


def plan(
    tensors: dict[str, Any],
    layers: int,
    rope_rows: Callable[[str], np.ndarray | None],
    quantizable: Callable[[str], bool],
    *,
    dequantize: bool,
    dtype: DType,
    where: str,
    overrides: dict[str, str] | None = None,
) -> Plan:
    """How each GGUF tensor becomes a parameter; ConfigError for tensors without a role.

    `rope_rows(role)`: the stored row order of a rotated projection (None: untouched);
    `quantizable(param)`: whether the graph reads that parameter in its stored dtype.
    """
    table = roles(layers, overrides)
    unknown = [n for n in tensors if n not in table]
    if unknown:
        raise ConfigError(
            "GGUF tensors without an IR role for this architecture",
            got=", ".join(unknown[:6]) + (" ..." if len(unknown) > 6 else ""),
            where=where,
        )
    result = Plan()
    for gname, t in tensors.items():
        layer, role, kind = table[gname]
        name = ir_name(layer, role, kind)
        shape = _shape(t)
        order = rope_rows(role) if role in ROTATED else None
        rows = None if order is None else np.argsort(order)  # stored[j] = ir[order[j]]
        ggml = t.tensor_type.name
        if ggml in FLOATS:
            result.params[name] = Param(name, t, shape, rows, dtype=FLOATS[ggml])
            continue
        spec = exact_spec(ggml, shape)
        if spec is None:
            why = f"{ggml} has no exact IR form"
        elif not quantizable(name):
            why = f"{ggml} on a weight its op reads in float"
        elif ggml in DATA_DEPENDENT and blocks_to_ir(ggml, t.data, shape) is None:
            why = f"{ggml} whose minimum is no integer zero point (not as irgraph writes it)"
        else:
            result.params[name] = Param(name, t, shape, rows, quant=spec)
            continue
        if not dequantize:
            result.refused.append(f"{gname} ({why})")
            continue
        result.params[name] = Param(name, t, shape, rows, dtype=dtype, dequantized=why)
    return result


class GgufWeights(WeightStore):
    """IR weight-store names -> arrays computed from the GGUF tensors on access, not kept
    (but the last quantized tensor's arrays, which `save` asks for one after another)."""

    def __init__(self, params: dict[str, Param]):
        super().__init__()
        self.params = params
        self.entries: dict[str, tuple[str, str]] = {}  # store name -> (param, suffix)
        for p in params.values():
            suffixes = [""] if p.quant is None else list(p.quant.stored(p.shape))
            self.entries.update({p.name + s: (p.name, s) for s in suffixes})
        self._last: tuple[str, dict[str, np.ndarray]] | None = None

    def _converted(self, name: str) -> dict[str, np.ndarray]:
        if self._last is not None and self._last[0] == name:
            return self._last[1]
        arrays = convert(self.params[name])
        self._last = (name, arrays)
        return arrays

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.entries:
            raise KeyError(name)
        param, suffix = self.entries[name]
        return self._converted(param)[suffix]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def shape_dtype(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        param, suffix = self.entries[name]
        p = self.params[param]
        if p.quant is not None:
            return p.quant.stored(p.shape)[suffix]
        return p.shape, np.dtype(p.dtype.numpy)


def convert(p: Param) -> dict[str, np.ndarray]:
    """Suffix -> stored array of parameter `p` (the data itself: '')."""
    import gguf

    t, ggml = p.tensor, p.tensor.tensor_type.name
    if p.quant is not None:
        converted = blocks_to_ir(ggml, t.data, p.shape)
        assert converted is not None  # plan() converted it once already
        arrays = converted[1]
    elif ggml in FLOATS and not p.dequantized:
        data = t.data if ggml != "BF16" else t.data.view(DType.bf16.numpy)
        arrays = {"": np.asarray(data).reshape(p.shape)}
    else:
        values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(p.shape)
        arrays = {"": np.ascontiguousarray(values, dtype=p.dtype.numpy)}
    if p.rows is not None:
        arrays = {s: np.ascontiguousarray(a[p.rows]) for s, a in arrays.items()}
    return arrays


def rope_row_orders(heads: int, kv_heads: int, head_dim: int) -> dict[str, np.ndarray]:
    """The writer's stored row order of q and k for llama.cpp's NORM rope (pairs 2i, 2i+1)."""
    order = rope_order(head_dim, head_dim, to_interleaved=True)
    return {
        "attn.q": head_rows(heads, head_dim, order),
        "attn.k": head_rows(kv_heads, head_dim, order),
    }


__all__ = ["GgufWeights", "Param", "Plan", "convert", "plan", "roles", "rope_row_orders"]
