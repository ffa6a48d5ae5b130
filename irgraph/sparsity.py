"""Pruned weights: the one record of which weights are sparse, in what pattern, how sparse.

Weights stay dense: a pruned weight is an ordinary float parameter whose pruned entries are
exact zeros, so every backend runs it unchanged. What was pruned is recorded in the graph's
meta under `sparsity`, one entry per weight, in parameter order:

    meta sparsity = [["layers.0.attn.q.weight", "2:4", 0.5], ["layers.0.mlp.up.weight",
                     "unstructured", 0.55]]

An entry is [parameter name, pattern, fraction]. The pattern is "unstructured" (any entries)
or "N:M" (semi-structured: at most N nonzeros in every group of M consecutive values along the
last axis, a linear's input features, as sparse tensor cores read them); `fraction` is the
share of entries the pruning pass set to zero (1 - N/M for a pattern; under OWL each weight
has its own). The mask is the weight's nonzeros: `mask(w)`.

Who reads it: `irgraph inspect` shows each pattern with its recorded and measured sparsity
(`summary`); the quantization passes keep pruned entries at zero (GPTQ rounds them to 0
instead of spreading error into them; RTN and AWQ map 0 to 0 exactly); `irgraph train` masks
the gradients of recorded weights so fine-tuning keeps the pattern. `check(graph)` says
whether the stored weights still honour their records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from irgraph.errors import IRError
from irgraph.ir import Graph
from irgraph.weights import WeightStore

META_KEY = "sparsity"
UNSTRUCTURED = "unstructured"
_NM = re.compile(r"^(\d+):(\d+)$")


@dataclass(frozen=True)
class Sparsity:
    """How one weight was pruned: its pattern ("unstructured" or "N:M") and pruned fraction."""

    pattern: str
    fraction: float

    def __post_init__(self) -> None:
        parse_pattern(self.pattern)
        if not 0.0 <= self.fraction < 1.0:
            raise IRError("sparsity fraction", expected="0 <= fraction < 1", got=self.fraction)

    @property
    def n_m(self) -> tuple[int, int] | None:
        """(N, M) of an N:M pattern; None when unstructured."""
        return parse_pattern(self.pattern)


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """'2:4' -> (2, 4); 'unstructured' -> None; IRError for anything else or N >= M."""
    if pattern == UNSTRUCTURED:
        return None
    m = _NM.match(pattern)
    if not m:
        raise IRError(
            "sparsity pattern", expected=f"{UNSTRUCTURED} or N:M, e.g. 2:4", got=repr(pattern)
        )
    n, mm = int(m.group(1)), int(m.group(2))
    if not 0 < n < mm:
        raise IRError(
            f"sparsity pattern {pattern}: N nonzeros in every M values",
            expected="0 < N < M (2:4, 4:8)",
            got=f"N={n}, M={mm}",
        )
    return n, mm


def records(graph: Graph) -> dict[str, Sparsity]:
    """Parameter name -> Sparsity for every recorded weight of `graph`."""
    raw = graph.meta.get(META_KEY)
    if raw is None:
        return {}
    where = f"meta {META_KEY}"
    if not isinstance(raw, list):
        raise IRError(
            "sparsity record is not a list",
            expected="[[name, pattern, fraction], ...]",
            got=type(raw).__name__,
            where=where,
        )
    result: dict[str, Sparsity] = {}
    for i, entry in enumerate(raw):
        ok = (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and isinstance(entry[1], str)
            and isinstance(entry[2], (int, float))
            and not isinstance(entry[2], bool)
        )
        if not ok:
            raise IRError(
                f"sparsity record entry {i}",
                expected='[name, pattern, fraction], e.g. ["w", "2:4", 0.5]',
                got=repr(entry),
                where=where,
            )
        name, pattern, fraction = entry
        if name not in graph.params:
            raise IRError(f"sparsity record names an unknown parameter @{name}", where=where)
        if name in result:
            raise IRError(f"sparsity record names @{name} twice", where=where)
        try:
            result[name] = Sparsity(pattern, float(fraction))
        except IRError as e:
            raise IRError(
                f"@{name}: {e.message}", expected=e.expected, got=e.got, where=where
            ) from None
    return result


def with_records(
    meta: Mapping[str, Any], new: Mapping[str, Sparsity], params: Mapping[str, Any]
) -> dict[str, Any]:
    """`meta` with its sparsity record updated by `new`, entries in the order of `params`,
    entries for parameters no longer in `params` dropped (and the key too when empty)."""
    old = {e[0]: Sparsity(e[1], float(e[2])) for e in meta.get(META_KEY) or []}
    merged = {**old, **new}
    entries = [[n, merged[n].pattern, round(merged[n].fraction, 6)] for n in params if n in merged]
    result = {k: v for k, v in meta.items() if k != META_KEY}
    if entries:
        result[META_KEY] = entries
    return result


def mask(weight: np.ndarray) -> np.ndarray:
    """The kept entries of a pruned weight: its nonzeros (bool, the weight's shape)."""
    return np.asarray(weight) != 0


def measured(weight: np.ndarray) -> float:
    """The share of entries that are zero."""
    w = np.asarray(weight)
    return float(np.count_nonzero(w == 0)) / max(w.size, 1)


def violation(weight: np.ndarray, spec: Sparsity) -> str | None:
    """Why `weight` does not honour `spec` (None when it does): an N:M group with too many
    nonzeros, or fewer zeros than the recorded fraction (rounded down per weight)."""
    w = np.asarray(weight)
    nm = spec.n_m
    if nm is not None:
        n, m = nm
        if w.shape[-1] % m:
            return f"last axis {w.shape[-1]} is not a multiple of M={m}"
        counts = np.count_nonzero(w.reshape(-1, m), axis=-1)
        if counts.max(initial=0) > n:
            return f"a group of {m} holds {int(counts.max())} nonzeros (at most {n})"
        return None
    zeros = np.count_nonzero(w == 0)
    if zeros < int(spec.fraction * w.size) - w.shape[0]:  # per-row rounding
        return f"{zeros} of {w.size} entries are zero, recorded fraction {spec.fraction:g}"
    return None


def check(graph: Graph) -> list[str]:
    """'@name: why' for every recorded weight of `graph` that no longer honours its record."""
    return [
        f"@{name}: {why}"
        for name, spec in records(graph).items()
        if (why := violation(graph.weight(name), spec)) is not None
    ]


@dataclass(frozen=True)
class PatternSummary:
    """For inspect: the weights recorded with one pattern."""

    pattern: str
    count: int
    params: int
    recorded: float  # recorded fraction, weighted by size
    measured: float | None  # zeros actually stored (None for a structure-only graph)


def summary(graph: Graph) -> list[PatternSummary]:
    """One PatternSummary per recorded pattern, in order of first appearance."""
    groups: dict[str, list[tuple[str, Sparsity]]] = {}
    for name, spec in records(graph).items():
        groups.setdefault(spec.pattern, []).append((name, spec))
    rows = []
    for pattern, items in groups.items():
        sizes = [graph.params[n].type.numel() for n, _ in items]
        total = max(sum(sizes), 1)
        recorded = sum(s.fraction * k for (_, s), k in zip(items, sizes)) / total
        zeros = None
        if graph.weights is not None:
            zeros = sum(measured(graph.weight(n)) * k for (n, _), k in zip(items, sizes)) / total
        rows.append(PatternSummary(pattern, len(items), sum(sizes), recorded, zeros))
    return rows


def remasked(graph: Graph, reference: Graph) -> Graph:
    """`graph` with each weight that `reference` records as pruned multiplied by its mask in
    `reference` (how a merged LoRA update, W + M⊙ΔW, keeps the pattern)."""
    recorded = records(reference)
    if not recorded or graph.weights is None:
        return graph
    arrays = {n: np.asarray(graph.weights[n]) for n in graph.stored_names()}
    for name in recorded:
        w = arrays[name]
        arrays[name] = np.where(mask(reference.weight(name)), w, 0).astype(w.dtype)
    return Graph(
        graph.name,
        dict(graph.inputs),
        dict(graph.params),
        list(graph.nodes),
        dict(graph.outputs),
        dict(graph.meta),
        WeightStore(arrays),
    )
