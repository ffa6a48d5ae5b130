"""Elementwise ops: arithmetic with numpy broadcasting, activations, gated units.

Unary and binary ops are declared as tables (one row per op, tinygrad-style):
the row gives the numpy meaning; the class factory below registers it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.registry import Attr, OpDef, broadcast_shapes, expect, register
from irgraph.types import TensorType


def _f32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if x.dtype.kind == "f" and x.dtype != np.float64 else x


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; math.erf per element is exact to double precision.
    return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)).astype(x.dtype)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        y = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)))
    else:
        y = 0.5 * x64 * (1 + np.vectorize(math.erf, otypes=[np.float64])(x64 / math.sqrt(2)))
    return y.astype(x.dtype)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1 / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


# Activation functions by name; `glu` and `moe_experts` take their `act` from these keys.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0),  # ReLU (T5, OPT)
    "relu2": lambda x: np.square(np.maximum(x, 0)),  # squared ReLU (Nemotron-4, Primer)
    "gelu": gelu,  # exact erf GELU (GPT-NeoX, BLOOM)
    "gelu_tanh": lambda x: gelu(x, "tanh"),  # tanh-approximated GELU (GPT-2, GPT-J)
    "fast_gelu": lambda x: x * sigmoid(1.702 * x),  # MindSpore FastGeLU (PanGu-Σ): x·σ(1.702x)
    "silu": lambda x: x * sigmoid(x),  # SiLU / Swish (LLaMA's SwiGLU)
    "sigmoid": sigmoid,  # σ (the original GLU)
}


def _unary(
    op_name: str, fn: Callable[..., np.ndarray], doc: str, attrs: dict[str, Attr] | None = None
) -> None:
    class Unary(OpDef):
        name = op_name
        inputs = ("x",)
        __doc__ = doc

        def infer(self, x: TensorType, **_: Any) -> list[TensorType]:
            return [x]

        def ref(self, x: np.ndarray, **kw: Any) -> list[np.ndarray]:
            return [fn(_f32(x), **kw)]

    Unary.attrs = attrs or {}
    Unary.__name__ = Unary.__qualname__ = op_name
    register(Unary)


UNARY: list[tuple[str, Callable[[np.ndarray], np.ndarray], str]] = [
    ("neg", np.negative, "-x"),
    ("exp", np.exp, "e^x"),
    ("log", np.log, "natural log"),
    ("sqrt", np.sqrt, "√x"),
    ("rsqrt", lambda x: 1 / np.sqrt(x), "1/√x"),
    ("tanh", np.tanh, "tanh x"),
    ("sin", np.sin, "sin x"),
    ("cos", np.cos, "cos x"),
    ("erf", _erf, "error function"),
    ("sigmoid", sigmoid, "logistic σ(x)"),
    ("relu", ACTIVATIONS["relu"], "max(x, 0)"),
    ("relu2", ACTIVATIONS["relu2"], "max(x, 0)² (squared ReLU)"),
    ("silu", ACTIVATIONS["silu"], "x·σ(x)"),
    ("fast_gelu", ACTIVATIONS["fast_gelu"], "x·σ(1.702x), MindSpore's FastGeLU"),
]
for _name, _fn, _doc in UNARY:
    _unary(_name, _fn, _doc)
_unary(
    "gelu",
    gelu,
    "GELU, exact (erf) or tanh-approximated",
    {"approximate": Attr("str", "none", choices=("none", "tanh"))},
)
_unary(
    "scale",
    lambda x, factor: x * np.float32(factor),
    "x·factor (DeepNorm residual α, embedding scale)",
    {"factor": Attr("float")},
)


def _binary(op_name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], doc: str) -> None:
    class Binary(OpDef):
        name = op_name
        inputs = ("a", "b")
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
    _binary(_name, _fn2, _doc)


@register
class Glu(OpDef):
    """Gated linear unit: act(gate) · up (GLU: σ, GEGLU: gelu, SwiGLU: silu, ReGLU: relu)."""

    name = "glu"
    inputs = ("gate", "up")
    attrs = {"act": Attr("str", choices=tuple(ACTIVATIONS))}

    def infer(self, gate: TensorType, up: TensorType, act: str) -> list[TensorType]:
        expect(gate == up, "glu gate and up must have one type", expected=gate, got=up)
        return [gate]

    def ref(self, gate: np.ndarray, up: np.ndarray, act: str) -> list[np.ndarray]:
        return [ACTIVATIONS[act](_f32(gate)) * _f32(up)]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        return 5 * outs[0].numel(env)
