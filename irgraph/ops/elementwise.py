"""Elementwise ops: arithmetic with numpy broadcasting, activations, gated units.

Unary and binary ops are declared as tables (one row per op, tinygrad-style):
the row gives the numpy meaning and category; the class factory below registers
it. The activation ops come from `irgraph.activations`, the one activation table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.activations import ACTIVATIONS, gelu
from irgraph.registry import Attr, Category, OpDef, broadcast_shapes, expect, register
from irgraph.types import TensorType


def _f32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if x.dtype.kind == "f" and x.dtype != np.float64 else x


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; math.erf per element is exact to double precision.
    return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)).astype(x.dtype)


def _unary(
    op_name: str,
    fn: Callable[..., np.ndarray],
    doc: str,
    kind: Category = Category.ELEMENTWISE,
    attrs: dict[str, Attr] | None = None,
    transparent: bool = False,
) -> None:
    class Unary(OpDef):
        name = op_name
        inputs = ("x",)
        category = kind
        __doc__ = doc

        def infer(self, x: TensorType, **_: Any) -> list[TensorType]:
            return [x]

        def ref(self, x: np.ndarray, **kw: Any) -> list[np.ndarray]:
            return [fn(_f32(x), **kw)]

    Unary.attrs = attrs or {}
    Unary.transparent = transparent
    Unary.__name__ = Unary.__qualname__ = op_name
    register(Unary)


E, A = Category.ELEMENTWISE, Category.ACTIVATION
UNARY: list[tuple[str, Callable[[np.ndarray], np.ndarray], str, Category]] = [
    ("neg", np.negative, "-x", E),
    ("exp", np.exp, "e^x", E),
    ("log", np.log, "natural log", E),
    ("sqrt", np.sqrt, "√x", E),
    ("rsqrt", lambda x: 1 / np.sqrt(x), "1/√x", E),
    ("tanh", np.tanh, "tanh x", A),  # an MLP activation in early nets, and inside GELU
    ("sin", np.sin, "sin x", E),
    ("cos", np.cos, "cos x", E),
    ("erf", _erf, "error function", A),  # GELU spelled out: x·(1 + erf(x/√2))/2
]
for _name, _fn, _doc, _kind in UNARY:
    _unary(_name, _fn, _doc, _kind)
for _name, _act in ACTIVATIONS.items():
    if _act.unary_op:
        _unary(_name, _act.fn, _act.formula, A)
_unary(
    "gelu",
    gelu,
    "GELU, exact (erf) or tanh-approximated",
    A,
    {"approximate": Attr("str", "none", choices=("none", "tanh"))},
)
_unary(
    "scale",
    lambda x, factor: x * np.float32(factor),
    "x·factor (DeepNorm residual α, embedding scale)",
    E,
    {"factor": Attr("float")},
    transparent=True,  # a scaled projection keeps its role
)


def _binary(
    op_name: str,
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    doc: str,
    gates: bool = False,
) -> None:
    class Binary(OpDef):
        name = op_name
        inputs = ("a", "b")
        category = Category.ELEMENTWISE
        gating = gates
        __doc__ = doc

        def infer(self, a: TensorType, b: TensorType) -> list[TensorType]:
            expect(
                a.dtype == b.dtype,
                f"{op_name} operands differ in dtype",
                expected=a.dtype,
                got=b.dtype,
            )
            return [TensorType(a.dtype, broadcast_shapes(a.shape, b.shape))]

        def ref(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
            return [fn(_f32(a), _f32(b))]

    Binary.__name__ = Binary.__qualname__ = op_name
    register(Binary)


BINARY: list[tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray], str]] = [
    ("add", np.add, "a + b"),
    ("sub", np.subtract, "a - b"),
    ("mul", np.multiply, "a · b"),
    ("div", np.divide, "a / b"),
    ("pow", np.power, "a ** b"),
    ("maximum", np.maximum, "max(a, b)"),
    ("minimum", np.minimum, "min(a, b)"),
]
for _name, _fn2, _doc in BINARY:
    _binary(_name, _fn2, _doc, gates=_name == "mul")  # mul(act(gate), up): a spelled-out GLU


@register
class Glu(OpDef):
    """Gated linear unit: act(gate) · up (GLU: σ, GEGLU: gelu, SwiGLU: silu, ReGLU: relu)."""

    name = "glu"
    inputs = ("gate", "up")
    attrs = {"act": Attr("str", choices=tuple(ACTIVATIONS))}
    category = Category.GATE
    gating = True

    def infer(self, gate: TensorType, up: TensorType, act: str) -> list[TensorType]:
        expect(gate == up, "glu gate and up must have one type", expected=gate, got=up)
        return [gate]

    def ref(self, gate: np.ndarray, up: np.ndarray, act: str) -> list[np.ndarray]:
        return [ACTIVATIONS[act].fn(_f32(gate)) * _f32(up)]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        return 5 * outs[0].numel(env)
