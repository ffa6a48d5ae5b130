"""The reference interpreter: runs any graph in numpy. It defines what the IR means.

Every op computes through its registry `ref` in fp32 (or wider); results are
stored in the dtype the graph declares. Symbolic dims are bound from the
shapes of the fed inputs and checked for consistency (`past+seq` must equal
past + seq).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from irgraph import feeds as feeds_check
from irgraph.errors import IRError
from irgraph.ir import Graph, Value
from irgraph.registry import get_op
from irgraph.types import TensorType


def bind_dims(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Values of the graph's symbolic dims implied by `feeds`; IRError on any mismatch."""
    return feeds_check.bind_dims(
        {n: v.type for n, v in graph.inputs.items()}, {n: np.shape(a) for n, a in feeds.items()}
    )


def run(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of `graph` for `feeds` (one array per graph input, by name)."""
    feeds_check.check_names(graph.inputs, feeds)
    arrays = {n: np.asarray(a) for n, a in feeds.items()}
    env = bind_dims(graph, arrays)
    values: dict[Value, np.ndarray] = {}
    for name, v in graph.inputs.items():
        values[v] = _as_type(arrays[name], v.type)
    for name, v in graph.params.items():
        values[v] = graph.weight(name)
    for node in graph.nodes:
        opdef = get_op(node.op)
        args = opdef.pad([values[v] if v is not None else None for v in node.inputs])
        results = opdef.ref(*args, **node.attrs)
        for out, res in zip(node.outputs, results):
            res = _as_type(np.asarray(res), out.type)
            expected = out.type.concrete(env) if out.type.symbols <= set(env) else None
            if expected is not None and res.shape != expected:
                raise IRError(
                    f"reference of {node.op} returned the wrong shape",
                    expected=expected,
                    got=res.shape,
                    where=f"node {node.op} -> {out!r}",
                )
            values[out] = res
    return {name: values[v] for name, v in graph.outputs.items()}


def _as_type(a: np.ndarray, t: TensorType) -> np.ndarray:
    dtype = t.dtype.numpy
    return a if a.dtype == dtype else a.astype(dtype)
