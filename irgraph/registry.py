"""The op registry: every op is declared once, here and in `irgraph.ops`.

An `OpDef` gives an op's inputs, attribute schema, type inference, numpy
reference implementation (the meaning of the op) and cost. Backends register
lowerings against the same names (`codegen.*`); passes look behaviour up here
instead of chaining `if op == ...` (STYLE.md lesson 8).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from irgraph.errors import IRError
from irgraph.types import Dim, TensorType

REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    """Schema of one attribute: its kind, default (REQUIRED if none) and allowed choices."""

    kind: str  # "int" | "float" | "bool" | "str" | "ints" | "floats"
    default: Any = REQUIRED
    choices: tuple[Any, ...] = ()
    optional: bool = False  # None is allowed
    doc: str = ""

    def check(self, op: str, key: str, value: Any) -> Any:
        if value is None and (self.optional or self.default is None):
            return None
        ok = _KIND_CHECKS[self.kind](value)
        if not ok:
            raise IRError(f"attribute {key!r} of {op}", expected=self.kind, got=repr(value))
        if self.kind == "float":
            value = float(value)
        elif self.kind in ("ints", "floats"):
            value = tuple(float(v) if self.kind == "floats" else int(v) for v in value)
        if self.choices and value not in self.choices:
            raise IRError(
                f"attribute {key!r} of {op}",
                expected=" | ".join(map(str, self.choices)),
                got=repr(value),
            )
        return value


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


_KIND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    "float": lambda v: isinstance(v, (int, float, np.floating)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "ints": lambda v: isinstance(v, (list, tuple)) and all(_is_int(x) for x in v),
    "floats": lambda v: (
        isinstance(v, (list, tuple))
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    ),
}


class OpDef(ABC):
    """Base class of op declarations; subclasses are registered with `@register`.

    inputs: input names; a trailing `?` marks an optional input (None when absent),
    a leading `*` a variadic tail. outputs: output names. infer(types..., **attrs)
    returns the output types; ref(arrays..., **attrs) computes them in numpy;
    flops(in_types, out_types, env, **attrs) counts multiply-adds as 2 FLOPs.
    """

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    outputs: ClassVar[tuple[str, ...]] = ("y",)
    attrs: ClassVar[dict[str, Attr]] = {}

    # Each op spells out its own inputs (TensorType | None) and attributes by name; the
    # registry calls infer(*input_types, **attrs) and ref(*arrays, **attrs). `Any` here
    # lets those op-specific signatures override (a type checker treats it as `...`).
    @abstractmethod
    def infer(self, *types: Any, **attrs: Any) -> Sequence[TensorType]:
        """Output types from input types; raises IRError on a mismatch."""

    @abstractmethod
    def ref(self, *arrays: Any, **attrs: Any) -> Sequence[np.ndarray]:
        """Reference outputs in numpy (float math in fp32 or wider)."""

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        """Default: one FLOP per output element (elementwise ops)."""
        return sum(t.numel(env) for t in outs)

    def pad(self, args: Iterable[Any]) -> list[Any]:
        """Arguments with absent trailing optional inputs filled with None."""
        args = list(args)
        if not self.variadic:
            args += [None] * (len(self.inputs) - len(args))
        return args

    def non_default(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes that differ from their defaults (what the text form prints)."""
        return {
            k: v
            for k, v in attrs.items()
            if self.attrs[k].default is REQUIRED or not _same(v, self.attrs[k].default)
        }

    # -- helpers shared by the schema checks -------------------------------------------------

    @property
    def variadic(self) -> bool:
        return bool(self.inputs) and self.inputs[-1].startswith("*")

    def check_arity(self, n: int) -> None:
        required = sum(1 for i in self.inputs if not i.endswith("?") and not i.startswith("*"))
        if n < required or (not self.variadic and n > len(self.inputs)):
            expected = (
                f"{required}" if required == len(self.inputs) else f"{required}..{len(self.inputs)}"
            )
            if self.variadic:
                expected = f"at least {required}"
            raise IRError(
                f"{self.name} takes inputs ({', '.join(self.inputs)})",
                expected=f"{expected} inputs",
                got=n,
            )

    def check_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise IRError(
                f"unknown attribute(s) {', '.join(unknown)} for op {self.name}",
                expected=", ".join(self.attrs) or "no attributes",
            )
        result = {}
        for key, spec in self.attrs.items():
            if key in attrs:
                result[key] = spec.check(self.name, key, attrs[key])
            elif spec.default is REQUIRED:
                raise IRError(f"op {self.name} needs attribute {key!r}", expected=spec.kind)
            else:
                result[key] = spec.default
        return result


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return (
        type(a) is type(b) and a == b
        if not isinstance(b, (int, float)) or isinstance(b, bool)
        else (not isinstance(a, bool) and a == b)
    )


OPS: dict[str, OpDef] = {}


def register(cls: type[OpDef]) -> type[OpDef]:
    """Class decorator: instantiate and add to `OPS` under `cls.name`."""
    if cls.name in OPS:
        raise IRError(f"op {cls.name!r} registered twice")
    OPS[cls.name] = cls()
    return cls


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise IRError(
            f"unknown op {name!r}", expected="a registered op (irgraph.registry.OPS)"
        ) from None


# -- shape helpers used by op declarations --------------------------------------------------


def expect(cond: bool, message: str, expected: Any = None, got: Any = None) -> None:
    """Raise IRError(message) unless cond: the type-inference analogue of a checked assert."""
    if not cond:
        raise IRError(message, expected=expected, got=got)


def given(types: Sequence[TensorType | None], i: int) -> TensorType:
    """The type of input `i`, which must be present (a required input): `flops` gets None for absent ones."""
    t = types[i]
    if t is None:
        raise IRError(f"input #{i} is absent", expected="a value")
    return t


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """Numpy broadcasting over possibly symbolic dims."""
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    result: list[Dim] = []
    for dims in zip(*padded):
        non_one = {d for d in dims if d != 1}
        expect(
            len(non_one) <= 1,
            "shapes do not broadcast",
            expected="equal dims or 1",
            got=" vs ".join(map(_fmt, shapes)),
        )
        result.append(non_one.pop() if non_one else 1)
    return tuple(result)


def _fmt(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def norm_axis(axis: int, rank: int) -> int:
    expect(-rank <= axis < rank, "axis out of range", expected=f"-{rank}..{rank - 1}", got=axis)
    return axis % rank
