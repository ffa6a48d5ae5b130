"""Tensor types: a dtype and a shape whose dims are ints or symbolic sums.

Symbolic dims name sizes known only at run time (`batch`, `seq`, `past`) and
the simple sums attention produces (`past+seq`). A `Sym` is a canonical sum of
named terms plus a constant, so `seq+past` and `past+seq` are the same dim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from irgraph.dtypes import DType
from irgraph.errors import IRError
from irgraph.quant import QuantSpec


@dataclass(frozen=True)
class Sym:
    """A symbolic dim: sum of `coef*name` terms plus `const` (terms sorted by name)."""

    terms: tuple[tuple[str, int], ...]
    const: int = 0

    @staticmethod
    def of(name: str) -> Sym:
        return Sym(((name, 1),))

    def __str__(self) -> str:
        parts = [name if coef == 1 else f"{coef}*{name}" for name, coef in self.terms]
        if self.const:
            parts.append(str(self.const))
        return "+".join(parts)

    def __add__(self, other: Dim) -> Dim:
        return add_dims(self, other)

    __radd__ = __add__

    def evaluate(self, env: Mapping[str, int]) -> int:
        missing = [name for name, _ in self.terms if name not in env]
        if missing:
            raise IRError(f"no value for symbolic dim {', '.join(missing)}")
        return self.const + sum(coef * env[name] for name, coef in self.terms)


Dim = int | Sym


def add_dims(a: Dim, b: Dim) -> Dim:
    """a + b, staying an int when both are ints."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    terms: dict[str, int] = {}
    const = 0
    for d in (a, b):
        if isinstance(d, int):
            const += d
        else:
            const += d.const
            for name, coef in d.terms:
                terms[name] = terms.get(name, 0) + coef
    kept = tuple(sorted((n, c) for n, c in terms.items() if c))
    return Sym(kept, const) if kept else const


def eval_dim(d: Dim, env: Mapping[str, int]) -> int:
    return d if isinstance(d, int) else d.evaluate(env)


_TERM = re.compile(r"^(?:(\d+)\*)?([A-Za-z_][A-Za-z0-9_]*)$")


def parse_dim(text: str) -> Dim:
    """Parse `4096`, `seq`, `past+seq`, `2*seq+1`."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    total: Dim = 0
    for part in text.split("+"):
        part = part.strip()
        if re.fullmatch(r"\d+", part):
            total = add_dims(total, int(part))
            continue
        m = _TERM.match(part)
        if not m:
            raise IRError(f"bad dim {text!r}", expected="an int, a name or a sum such as past+seq")
        coef = int(m.group(1) or 1)
        total = add_dims(total, Sym(((m.group(2), coef),)))
    return total


@dataclass(frozen=True)
class TensorType:
    """A dtype and a shape; a quantized weight also carries its `QuantSpec` (irgraph/quant.py).

    A quantized type's shape is the logical (dequantized) one: `i4<g32,sym,f16>[64, 96]`.
    """

    dtype: DType
    shape: tuple[Dim, ...]
    quant: QuantSpec | None = None

    def __post_init__(self) -> None:
        if self.quant is not None and self.quant.storage is not self.dtype:
            raise IRError(
                f"{self.quant.bits}-bit values are stored in {self.quant.storage}",
                got=str(self.dtype),
            )

    def __str__(self) -> str:
        spec = f"<{self.quant}>" if self.quant is not None else ""
        return f"{self.dtype}{spec}[{', '.join(str(d) for d in self.shape)}]"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(dtype, self.shape)

    def concrete(self, env: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(eval_dim(d, env) for d in self.shape)

    def numel(self, env: Mapping[str, int] | None = None) -> int:
        n = 1
        for d in self.concrete(env or {}):
            n *= d
        return n

    def nbytes(self, env: Mapping[str, int] | None = None) -> int:
        """Bytes as stored (a quantized weight: its data, scales and zero points)."""
        if self.quant is not None:
            return self.quant.nbytes(self.concrete(env or {}))
        return (self.numel(env) * self.dtype.bits + 7) // 8

    @property
    def symbols(self) -> set[str]:
        return {name for d in self.shape if isinstance(d, Sym) for name, _ in d.terms}


def parse_type(text: str) -> TensorType:
    """Parse `f32[batch, seq, 64]` or `i4<g32,sym,f16>[64, 96]`."""
    m = re.fullmatch(r"\s*([a-z0-9]+)(?:<([^>]*)>)?\[(.*)\]\s*", text)
    if not m:
        raise IRError(f"bad tensor type {text!r}", expected="dtype[dims], e.g. f32[batch, seq, 64]")
    dims = m.group(3).strip()
    shape = tuple(parse_dim(d) for d in dims.split(",")) if dims else ()
    dtype = DType.parse(m.group(1))
    quant = None
    if m.group(2) is not None:
        quant = QuantSpec.parse(dtype, [item.strip() for item in m.group(2).split(",")])
    return TensorType(dtype, shape, quant)
