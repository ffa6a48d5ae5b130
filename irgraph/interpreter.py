"""The reference interpreter: runs any graph in numpy. It defines what the IR means.

Every op computes through its registry `ref` in fp32 (or wider); results are
stored in the dtype the graph declares. Symbolic dims are bound from the
shapes of the fed inputs and checked for consistency (`past+seq` must equal
past + seq).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from irgraph.errors import IRError
from irgraph.ir import Graph, Value
from irgraph.registry import get_op
from irgraph.types import Sym, TensorType


def bind_dims(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Values of the graph's symbolic dims implied by `feeds`; IRError on any mismatch."""
    env: dict[str, int] = {}
    pending: list[tuple[str, Sym, int]] = []
    for name, v in graph.inputs.items():
        arr = feeds[name]
        if arr.ndim != v.type.rank:
            raise IRError(
                f"input {name!r} has the wrong rank", expected=str(v.type), got=list(arr.shape)
            )
        for d, n in zip(v.type.shape, arr.shape):
            if isinstance(d, int):
                if d != n:
                    raise IRError(
                        f"input {name!r} has the wrong shape",
                        expected=str(v.type),
                        got=list(arr.shape),
                    )
            elif len(d.terms) == 1 and d.terms[0][1] == 1 and d.const == 0:
                sym = d.terms[0][0]
                if env.setdefault(sym, n) != n:
                    raise IRError(
                        f"input {name!r}: dim {sym} is {n} here but {env[sym]} elsewhere",
                        expected=str(v.type),
                        got=list(arr.shape),
                    )
            else:
                pending.append((name, d, n))
    for name, d, n in pending:
        unknown = [t for t, _ in d.terms if t not in env]
        if len(unknown) == 1:
            coef = dict(d.terms)[unknown[0]]
            rest = d.const + sum(c * env[t] for t, c in d.terms if t != unknown[0])
            env[unknown[0]] = (n - rest) // coef
        if d.evaluate(env) != n:
            raise IRError(f"input {name!r}: dim {d} should be {d.evaluate(env)}", got=n)
    return env


def run(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of `graph` for `feeds` (one array per graph input, by name)."""
    missing = [n for n in graph.inputs if n not in feeds]
    if missing:
        raise IRError(f"missing inputs: {', '.join(missing)}", expected=", ".join(graph.inputs))
    unknown = [n for n in feeds if n not in graph.inputs]
    if unknown:
        raise IRError(f"unknown inputs: {', '.join(unknown)}", expected=", ".join(graph.inputs))
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
