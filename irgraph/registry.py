"""The op registry: every op is declared once, here and in `irgraph.ops`.

An `OpDef` gives an op's inputs, attribute schema, type inference, numpy
reference implementation (the meaning of the op) and cost, and its traits: a
`Category`, which inputs are weights, which are indices into another input,
which weights are routed per token. Backends register lowerings against the
same names (`codegen.*`); passes and analysis ask the traits instead of keeping
their own op-name sets (STYLE.md lesson 8), so a new activation declared with
`category = Category.ACTIVATION` is traced by the fusions without touching them.
"""

from __future__ import annotations

import enum
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


class Category(enum.Enum):
    """What kind of computation an op is: the fact passes and analysis ask first."""

    ELEMENTWISE = "elementwise"  # per-element math with numpy broadcasting (add, exp, cast, where)
    ACTIVATION = "activation"  # a unary nonlinearity an MLP input projection feeds (silu, gelu)
    GATE = "gate"  # act(gate)·up in one op (glu)
    NORM = "norm"  # normalisation over the last dim with a learned weight (layer_norm, rms_norm)
    REDUCTION = "reduction"  # reduces or normalises along axes, no weights (reduce_sum, softmax)
    DATA_MOVEMENT = "data_movement"  # moves elements without arithmetic (reshape, split, gather)
    LINEAR = "linear"  # matrix products (matmul, linear)
    EMBEDDING = "embedding"  # rows of a weight table by integer ids
    POSITION = "position"  # position encodings (rotary, alibi, relative_position_bias)
    ATTENTION = "attention"  # attention over queries, keys and values (and its caches)
    ROUTER = "router"  # chooses experts per token (moe_router)
    ROUTED = "routed"  # runs only the experts chosen per token (moe_experts)


class Dropout(enum.Enum):
    """Where training applies dropout to an op's output (GPT-2's embedding and residual dropout)."""

    NEVER = "never"
    ALWAYS = "always"  # every output of the op (the token embedding)
    RESIDUAL = "residual"  # when the output opens a residual branch (an `add` reads it)


@dataclass(frozen=True)
class IndexBound:
    """An integer input that indexes another input: valid values are 0 <= i < table.shape[axis].

    The axis is `axis`, or the value of the int attribute `axis_attr` when that is set (gather).
    """

    table: str  # name of the indexed input
    axis: int = 0
    axis_attr: str | None = None
    negative: bool = False  # -n <= i < 0 counts from the end too (gather, as numpy.take)

    def bound(self, table: TensorType, attrs: Mapping[str, Any]) -> Dim:
        axis = attrs.get(self.axis_attr, self.axis) if self.axis_attr else self.axis
        return table.shape[axis % max(1, table.rank)]


class OpDef(ABC):
    """Base class of op declarations; subclasses are registered with `@register`.

    inputs: input names; a trailing `?` marks an optional input (None when absent),
    a leading `*` a variadic tail. outputs: output names. infer(types..., **attrs)
    returns the output types; ref(arrays..., **attrs) computes them in numpy;
    flops(in_types, out_types, env, **attrs) counts multiply-adds as 2 FLOPs.

    Traits name inputs without their `?`/`*` marks; `register` checks them.
    """

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    outputs: ClassVar[tuple[str, ...]] = ("y",)
    attrs: ClassVar[dict[str, Attr]] = {}

    # -- traits --------------------------------------------------------------------------------
    category: ClassVar[Category]
    """Required: what kind of computation this is (no default, so a new op must say)."""
    weights: ClassVar[tuple[str, ...]] = ()
    """Inputs that are learned weights (parameters in every graph the builders make)."""
    stored_dtype: ClassVar[tuple[str, ...]] = ()
    """Weights the op reads in their stored dtype (quantized or narrower than the activations):
    the op converts them itself, so a backend must not cast them before the op."""
    indices: ClassVar[Mapping[str, IndexBound]] = {}
    """Integer inputs that index another input, with their valid range."""
    routed: ClassVar[tuple[str, ...]] = ()
    """Weights of which each token uses only `active_fraction` (the routed experts)."""
    transparent: ClassVar[bool] = False
    """Output is input 0 moved, rotated, cast or scaled: a linear projection's role (attention
    or MLP input) shows through the op, and fusions trace through it along input 0."""
    gating: ClassVar[bool] = False
    """Multiplies a gate into a value (glu, mul): its inputs may be a gated MLP's projections."""
    dropout: ClassVar[Dropout] = Dropout.NEVER
    """Where training applies dropout to the output."""
    no_arithmetic: ClassVar[bool] = False
    """Moves, reshapes or looks data up and computes nothing: 0 FLOPs (reshape, gather, ...)."""

    def active_fraction(self, types: Sequence[TensorType | None], **attrs: Any) -> float | None:
        """Fraction of the `routed` weights one token uses, None if unknown (a symbolic count)."""
        return None

    def index_bounds(
        self, types: Sequence[TensorType | None], attrs: Mapping[str, Any]
    ) -> dict[int, Dim]:
        """Input slot -> exclusive upper bound of its values, for the `indices` inputs present."""
        result: dict[int, Dim] = {}
        for name, spec in self.indices.items():
            slot, table = self.slot(name), self.slot(spec.table)
            if slot < len(types) and table < len(types):
                t = types[table]
                if types[slot] is not None and t is not None:
                    result[slot] = spec.bound(t, attrs)
        return result

    def slot(self, name: str) -> int:
        """The position of input `name` (given without its `?` mark)."""
        return [i.strip("?*") for i in self.inputs].index(name)

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
        """Default: one FLOP per output element (elementwise ops); 0 for `no_arithmetic`."""
        return 0 if self.no_arithmetic else sum(t.numel(env) for t in outs)

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
    """Class decorator: check the traits, instantiate and add to `OPS` under `cls.name`."""
    if cls.name in OPS:
        raise IRError(f"op {cls.name!r} registered twice")
    _check_traits(cls)
    OPS[cls.name] = cls()
    return cls


def _check_traits(cls: type[OpDef]) -> None:
    """Raise IRError naming the op when a trait is missing or names an input the op lacks."""
    where = f"op {cls.name!r}"
    category = getattr(cls, "category", None)
    if not isinstance(category, Category):
        raise IRError(
            f"{where} declares no category",
            expected=" | ".join(c.name for c in Category),
            got=repr(category),
        )
    names = tuple(i.strip("?*") for i in cls.inputs)
    named = {
        "weights": cls.weights,
        "stored_dtype": cls.stored_dtype,
        "routed": cls.routed,
        "indices": tuple(cls.indices),
        "index tables": tuple(b.table for b in cls.indices.values()),
    }
    for trait, values in named.items():
        unknown = [v for v in values if v not in names]
        if unknown:
            raise IRError(
                f"{where}: {trait} name inputs it does not have",
                expected=", ".join(names) or "no inputs",
                got=", ".join(unknown),
            )
    for spec in cls.indices.values():
        if spec.axis_attr is not None and spec.axis_attr not in cls.attrs:
            raise IRError(
                f"{where}: an index bound reads its axis from a missing attribute",
                expected=", ".join(cls.attrs) or "no attributes",
                got=spec.axis_attr,
            )
    for trait in ("stored_dtype", "routed"):
        stray = sorted(set(getattr(cls, trait)) - set(cls.weights))
        if stray:
            raise IRError(
                f"{where}: {trait} inputs must be weights", expected=cls.weights, got=stray
            )
    if (category is Category.ROUTED) != bool(cls.routed):
        raise IRError(
            f"{where}: routed weights and the ROUTED category go together",
            expected="both or neither",
            got=f"category {category.name}, routed {cls.routed}",
        )
    if category is Category.ACTIVATION and (len(cls.inputs) != 1 or len(cls.outputs) != 1):
        raise IRError(
            f"{where}: an ACTIVATION is unary (the fusions trace it through input 0)",
            expected="one input and one output",
            got=f"inputs {cls.inputs}, outputs {cls.outputs}",
        )
    if cls.transparent and not cls.inputs:
        raise IRError(f"{where} is transparent but has no input to see through")


def ops_in(*categories: Category) -> tuple[str, ...]:
    """Names of the registered ops of these categories, in registration order."""
    import irgraph.ops  # noqa: F401  (registers the op set on first use)

    return tuple(name for name, op in OPS.items() if op.category in categories)


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
    """The type of input `i`, which must be present (a required input).

    `flops` gets None for absent ones.
    """
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
