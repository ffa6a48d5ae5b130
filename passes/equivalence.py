"""Translation validation: run a graph before and after a pass in the interpreter and compare.

Inputs are random but meaningful for language models (lm.py conventions): token
ids inside the vocabulary, positions that continue the cache, an all-ones
attention mask, random KV caches. Two cases run: a prefill (past = 0, seq = 3)
and a decode step with a nonempty cache (past = 3, seq = 1), batch 2 in both.
The error is max |after - before| / max(1, max |before|) over all outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import PassError
from irgraph.interpreter import run
from irgraph.ir import Graph, Value
from irgraph.lm import LOGITS, LOGITS_LAST
from irgraph.types import TensorType

CASES: dict[str, dict[str, int]] = {
    "prefill": {"batch": 2, "seq": 3, "past": 0},
    "decode": {"batch": 2, "seq": 1, "past": 3},
}
OTHER_DIM = 3  # any other symbolic dim (encoder length, ...)


@dataclass(frozen=True)
class Comparison:
    max_error: float
    worst: str  # "output 'logits' (decode): max error 3.1e-07"


def _index_bound(graph: Graph, v: Value) -> int | None:
    """Rows of the table an integer input indexes (embedding / gather), if it does."""
    bounds = []
    for node in graph.nodes:
        if node.op == "embedding" and node.inputs[0] is v and node.inputs[1] is not None:
            bounds.append(node.inputs[1].type.shape[0])
        elif (
            node.op == "gather"
            and len(node.inputs) > 1
            and node.inputs[1] is v
            and node.inputs[0] is not None
        ):
            axis = node.attrs.get("axis", 0) % max(1, node.inputs[0].type.rank)
            bounds.append(node.inputs[0].type.shape[axis])
    ints = [b for b in bounds if isinstance(b, int)]
    return min(ints) if ints else None


def random_feeds(
    graph: Graph, dims: Mapping[str, int], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One random feed per graph input, with symbolic dims bound from `dims`."""
    feeds: dict[str, np.ndarray] = {}
    for name, v in graph.inputs.items():
        shape = tuple(_concrete(v.type, dims))
        dtype = v.type.dtype.numpy
        if v.type.dtype.is_float:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif name == "position_ids":
            pos = dims.get("past", 0) + np.arange(shape[-1])
            feeds[name] = np.broadcast_to(pos, shape).astype(dtype).copy()
        elif name in ("attention_mask", "encoder_attention_mask") or v.type.dtype is DType.bool:
            feeds[name] = np.ones(shape, dtype=dtype)
        elif name == "prefix_len":
            feeds[name] = np.full(shape, dims.get("past", 0) + dims.get("seq", 1), dtype=dtype)
        else:
            bound = _index_bound(graph, v) or 1
            feeds[name] = rng.integers(0, bound, size=shape).astype(dtype)
    return feeds


def _concrete(t: TensorType, dims: Mapping[str, int]) -> list[int]:
    env = dict(dims)
    for d in t.shape:
        if not isinstance(d, int):
            for sym, _ in d.terms:
                env.setdefault(sym, OTHER_DIM)
    return list(t.concrete(env))


def compare(before: Graph, after: Graph, *, seed: int = 0) -> Comparison:
    """Run both graphs on the same random inputs (CASES) and return the largest relative error."""
    if before.weights is None or after.weights is None:
        raise PassError(
            "cannot check equivalence of a structure-only graph (it has no weights)",
            where=f"graph {before.name!r}",
        )
    in_b = {n: v.type for n, v in before.inputs.items()}
    in_a = {n: v.type for n, v in after.inputs.items()}
    added = [n for n in after.outputs if n not in before.outputs]
    if (
        in_b != in_a
        or [n for n in after.outputs if n not in added] != list(before.outputs)
        or (added and (added != [LOGITS_LAST] or LOGITS not in before.outputs))
    ):
        raise PassError(
            "the pass changed the graph's interface (inputs or outputs)",
            expected=f"{sorted(in_b)} -> {list(before.outputs)}",
            got=f"{sorted(in_a)} -> {list(after.outputs)}",
        )
    worst, where = 0.0, "no difference"
    for case, dims in CASES.items():
        feeds = random_feeds(before, dims, np.random.default_rng(seed))
        ref = run(before, feeds)
        got = run(after, feeds)
        if added:  # last-position-logits: logits_last is the last row of the logits
            ref[LOGITS_LAST] = ref[LOGITS][:, -1:]
        for name, r in ref.items():
            g = got[name]
            if r.shape != g.shape:
                return Comparison(
                    float("inf"), f"output {name!r} ({case}) changed shape {r.shape} -> {g.shape}"
                )
            r64, g64 = r.astype(np.float64), g.astype(np.float64)
            scale = max(1.0, float(np.max(np.abs(r64)))) if r.size else 1.0
            diff = np.abs(g64 - r64)
            err = float(np.nanmax(diff)) / scale if r.size else 0.0
            if np.isnan(g64).sum() != np.isnan(r64).sum():
                err = float("inf")
            if err > worst or (err != err):
                worst, where = err, f"output {name!r} ({case}): max error {err:.3g}"
    return Comparison(worst, where)


def check_equivalent(
    before: Graph, after: Graph, *, tolerance: float = 1e-5, seed: int = 0
) -> float:
    """The max error of `after` against `before`; PassError when above `tolerance`."""
    cmp = compare(before, after, seed=seed)
    if not cmp.max_error <= tolerance:
        raise PassError(
            f"graphs differ: {cmp.worst}",
            expected=f"max error <= {tolerance:g}",
            got=f"{cmp.max_error:.3g}",
        )
    return cmp.max_error
