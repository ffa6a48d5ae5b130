"""The activation functions, one row each: the single table every part keys by name.

`glu` and `moe_experts` take their `act` attribute from these names; the rows
marked `unary_op` are also elementwise ops of the same name (category
ACTIVATION), so the fusions trace through them. Each backend keeps one map from
these names to its own code (ONNX nodes, Relax, torch), and a test checks each
map covers the whole table: adding a row here without a backend entry fails
loudly instead of at compile time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU in float64: exact 0.5·x·(1 + erf(x/√2)) or the tanh approximation."""
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        y = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)))
    else:
        y = 0.5 * x64 * (1 + np.vectorize(math.erf, otypes=[np.float64])(x64 / math.sqrt(2)))
    return y.astype(x.dtype)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic σ(x) in float64 (no overflow warning for large |x| in fp32)."""
    return (1 / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


@dataclass(frozen=True)
class Activation:
    """One activation: its numpy meaning, its formula and where it is used."""

    fn: Callable[[np.ndarray], np.ndarray]
    formula: str
    used_by: str
    unary_op: bool = True  # also an elementwise op of this name (gelu: one op with `approximate`)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(lambda x: np.maximum(x, 0), "max(x, 0)", "T5, OPT"),
    "relu2": Activation(
        lambda x: np.square(np.maximum(x, 0)), "max(x, 0)² (squared ReLU)", "Nemotron-4, Primer"
    ),
    "gelu": Activation(gelu, "exact (erf) GELU", "GPT-NeoX, BLOOM", unary_op=False),
    "gelu_tanh": Activation(
        lambda x: gelu(x, "tanh"), "tanh-approximated GELU", "GPT-2, GPT-J", unary_op=False
    ),
    "fast_gelu": Activation(
        lambda x: x * sigmoid(1.702 * x), "x·σ(1.702x), MindSpore's FastGeLU", "PanGu-Σ"
    ),
    "silu": Activation(lambda x: x * sigmoid(x), "x·σ(x) (SiLU / Swish)", "LLaMA's SwiGLU"),
    "sigmoid": Activation(sigmoid, "logistic σ(x)", "the original GLU"),
    "softplus": Activation(
        lambda x: np.logaddexp(0, x.astype(np.float64)).astype(x.dtype),
        "log(1 + eˣ), a smooth ReLU",
        "Mamba's step size, Mish",
    ),
}
