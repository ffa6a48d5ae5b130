"""What the cache-storage passes share: finding a cached attention's cache inputs, and putting
another attention op with retyped caches in its place (sliding-window-cache, paged-kv).

    result = replace_cached(graph, sites, inputs, "ring_attention", extra, attrs, contract)

`sites` are (attention node, (key input name, value input name)); `inputs` the graph's new
input dict (the caches retyped, inputs added or dropped); `extra(node)` the new op's inputs
after q, k, v and the two caches; `attrs(node)` its attributes. The new op's outputs are
(out, present key, present value): `out` replaces the attention's, the presents become the
graph's `present.*` outputs, and the graph's meta states `contract`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from irgraph.errors import PassError
from irgraph.ir import Graph, Node, Value
from irgraph.kvcache import CacheContract, with_contract
from irgraph.lm import present_name
from irgraph.passes.rewrite import Rewriter

Site = tuple[Node, tuple[str, str]]


def optional_input(node: Node, i: int) -> Value | None:
    """Optional input i (absent, or left off the end)."""
    return node.inputs[i] if i < len(node.inputs) else None


def cache_names(node: Node, by_value: Mapping[Value, str]) -> tuple[str, str] | None:
    """The graph-input names of a cached attention's past key and value, if both are inputs."""
    pk, pv = node.inputs[3], node.inputs[4]
    key = by_value.get(pk) if pk is not None else None
    value = by_value.get(pv) if pv is not None else None
    return (key, value) if key is not None and value is not None else None


def require_concat_bnsh(contract: CacheContract, pass_name: str, run_before: str) -> None:
    """PassError unless the cache is still the default storage and layout."""
    if contract.storage != "concat" or contract.layout != "bnsh":
        raise PassError(
            f"{pass_name} rewrites a concat bnsh cache",
            expected=f"run it before {run_before}",
            got=f"{contract.storage} {contract.layout}",
        )


def replace_cached(
    graph: Graph,
    sites: Sequence[Site],
    inputs: dict[str, Value],
    op: str,
    extra: Callable[[Node], tuple[Value | None, ...]],
    attrs: Callable[[Node], dict[str, Any]],
    contract: CacheContract,
) -> Graph:
    """`graph` with `op` in place of each site's attention (see the module docstring)."""
    staged = Graph(graph.name, inputs, graph.params, graph.nodes, graph.outputs, graph.meta)
    staged.weights = graph.weights
    rw = Rewriter(staged)
    outputs = dict(graph.outputs)
    for node, (key, value) in sites:
        rw.at(node)
        caches = (inputs[key], inputs[value])
        out, present_k, present_v = rw.emit(
            op, *node.inputs[:3], *caches, *extra(node), **attrs(node)
        )
        rw.replace(node.outputs[0], out)
        outputs[present_name(key)], outputs[present_name(value)] = present_k, present_v
    staged.outputs = outputs
    result = rw.finish()
    result.meta = with_contract(result.meta, contract)
    return result
