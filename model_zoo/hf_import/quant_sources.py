"""Quantized modules in the role table and the weight store (see quantized.py for the formats).

`quantized_names` stands one `<module>.weight` in for each module's quantized tensors, so the
role table (roles.py) names it like a float weight. `quantized_sources` turns the parameters'
QuantLinears into the stored arrays the graph reads (`NAME`, `NAME.scales`,
`NAME.zero_points`) and folds act-order permutations into the rows that produce the permuted
input; one it cannot fold is refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.model_zoo.hf_import.quantized import QuantLinear, Scheme
from irgraph.model_zoo.hf_import.weights import Source
from irgraph.quant import stored_names

_DOWN = re.compile(r"(layers\.\d+)\.mlp\.down\.weight")


def quantized_names(names: list[str], scheme: Scheme) -> tuple[list[str], dict[str, str]]:
    """(names with each quantized module as `<module>.weight`, that name -> module)."""
    suffix = re.compile(rf"(.+)\.({'|'.join(map(re.escape, scheme.suffixes))})")
    modules: dict[str, str] = {}
    rest = []
    for name in names:
        m = suffix.fullmatch(name)
        if m:
            modules[f"{m[1]}.weight"] = m[1]
        else:
            rest.append(name)
    clash = sorted(set(modules) & set(rest))
    if clash:
        raise ConfigError(f"{clash[0]!r} is stored both quantized and as a float weight")
    return rest + sorted(modules), modules


def _rows(load: Callable[[], np.ndarray], perm: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: np.ascontiguousarray(np.asarray(load())[perm])


def quantized_sources(
    graph: Graph, sources: dict[str, Source], linears: dict[str, QuantLinear], where: str
) -> dict[str, Source]:
    """The weight-store sources of `graph`: floats as given, each QuantLinear's stored arrays."""
    perms: dict[str, np.ndarray] = {}  # param -> its rows' new order
    for role, q in linears.items():
        if q.perm is None:
            continue
        m = _DOWN.fullmatch(role)
        producers = (
            [f"{m[1]}.mlp.{p}.{k}" for p in ("gate", "up") for k in ("weight", "bias")] if m else []
        )
        if not m or f"{m[1]}.mlp.gate.weight" not in graph.params:
            raise ConfigError(
                f"{role} ({q.origin}) uses act order (a g_idx that is not i // group_size): its "
                "input channels come from where irgraph cannot permute them exactly, and the IR's "
                "groups are consecutive columns, so it has no quantized form here; quantize "
                "without desc_act / act order (or with static groups)",
                where=where,
            )
        for p in producers:
            if p in graph.params:
                perms[p] = q.perm
    out: dict[str, Source] = {}
    for name, src in sources.items():
        if name in linears:
            continue
        load = _rows(src.load, perms[name]) if name in perms else src.load
        out[name] = Source(src.shape, src.dtype, load, src.origin)
    for name, q in linears.items():
        arrays = lru_cache(maxsize=1)(q.arrays)  # the data and its scales are written in turn
        perm = perms.get(name)
        for stored in stored_names(name, q.spec):
            suffix = stored[len(name) :]
            shape, dtype = q.spec.stored(q.shape)[suffix]

            def load(suffix: str = suffix, arrays=arrays) -> np.ndarray:  # type: ignore[no-untyped-def]
                return arrays()[suffix]

            if perm is not None:  # rows are independent in every stored array
                load = _rows(load, perm)
            out[stored] = Source(shape, dtype, load, q.origin)
    return out


__all__ = ["quantized_names", "quantized_sources"]
