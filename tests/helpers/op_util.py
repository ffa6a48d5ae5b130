"""Run one op through the builder and the reference interpreter (shared by the op tests).

Going through `GraphBuilder` + `irgraph.run` rather than calling `OpDef.ref`
directly also checks the op's type inference against the arrays it returns.
"""

from __future__ import annotations

import numpy as np
import torch

import irgraph
from irgraph import DType, GraphBuilder

TOL = {"rtol": 1e-5, "atol": 1e-5}


def type_of(a: np.ndarray) -> str:
    return f"{DType.from_numpy(a.dtype)}[{', '.join(map(str, a.shape))}]"


def run_op(op: str, *arrays: np.ndarray | None, **attrs) -> list[np.ndarray]:
    """Outputs of `op(arrays) {attrs}`; a None array is an absent optional input."""
    b = GraphBuilder(f"one-{op}")
    feeds, values = {}, []
    for i, a in enumerate(arrays):
        if a is None:
            values.append(None)
            continue
        values.append(b.input(f"in{i}", type_of(a)))
        feeds[f"in{i}"] = a
    outs = b.op(op, *values, **attrs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    for i, v in enumerate(outs):
        b.output(f"out{i}", v)
    result = irgraph.run(b.build({}), feeds)
    return [result[f"out{i}"] for i in range(len(outs))]


def close(got: np.ndarray, expected, **kw) -> None:
    """assert_allclose at the fp32 tolerance of the acceptance criteria (<= 1e-5)."""
    if isinstance(expected, torch.Tensor):
        expected = (
            expected.detach().float().numpy() if expected.is_floating_point() else expected.numpy()
        )
    np.testing.assert_allclose(np.asarray(got), expected, **{**TOL, **kw})


def randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(np.float32)
