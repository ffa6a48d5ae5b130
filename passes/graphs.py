"""Graph utilities every pass shares: an index of producers and users, dead-code removal,
a stable topological sort and building a pass's result graph.

Passes never edit the graph they are given: they build a new `Graph` that shares
the unchanged `Value`s and `Node`s (both are immutable by convention), so the
pass manager can still run the graph from before the pass to check equivalence.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

import numpy as np

from irgraph.errors import PassError
from irgraph.ir import Graph, Node, Value
from irgraph.sparsity import META_KEY as SPARSITY
from irgraph.sparsity import with_records
from irgraph.weights import WeightStore


class GraphIndex:
    """Producers, users and node positions of one graph, computed once."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.producer: dict[Value, Node] = graph.producers()
        self.users: dict[Value, list[Node]] = graph.users()
        self.position: dict[Node, int] = {n: i for i, n in enumerate(graph.nodes)}
        self.outputs: set[Value] = set(graph.outputs.values())

    def users_of(self, v: Value) -> list[Node]:
        return self.users.get(v, [])

    def single_use(self, v: Value) -> bool:
        """True when exactly one node reads `v` (once) and it is not a graph output."""
        users = self.users_of(v)
        return (
            len(users) == 1 and v not in self.outputs and sum(i is v for i in users[0].inputs) == 1
        )

    def depends_on(self, v: Value, target: Value) -> bool:
        """Whether computing `v` needs `target` (a backward search over producers)."""
        seen: set[Value] = set()
        stack = [v]
        while stack:
            cur = stack.pop()
            if cur is target:
                return True
            node = self.producer.get(cur)
            if node is None or cur in seen:
                continue
            seen.add(cur)
            stack.extend(i for i in node.inputs if i is not None)
        return False

    def describe(self, node: Node) -> str:
        """'node linear #12 (-> %q)': how errors and explanations name a node."""
        hint = node.outputs[0].hint if node.outputs else None
        return f"node {node.op} #{self.position.get(node, '?')}" + (
            f" (-> %{hint})" if hint else ""
        )


def topo_sort(nodes: list[Node], defined: Iterable[Value]) -> list[Node]:
    """Stable topological order: keeps the given order wherever it is already valid."""
    producer = {out: i for i, n in enumerate(nodes) for out in n.outputs}
    available = set(defined)
    waiting: dict[int, int] = {}
    readers: dict[int, list[int]] = {}
    ready: list[int] = []
    for i, node in enumerate(nodes):
        deps = {
            producer[v]
            for v in node.inputs
            if v is not None and v not in available and v in producer
        }
        waiting[i] = len(deps)
        for d in deps:
            readers.setdefault(d, []).append(i)
        if not deps:
            heapq.heappush(ready, i)
    order: list[Node] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for r in readers.get(i, ()):
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(nodes):
        stuck = [nodes[i].op for i, w in waiting.items() if w > 0][:5]
        raise PassError("the rewritten graph has a cycle", got=f"nodes stuck: {', '.join(stuck)}")
    return order


def live_nodes(graph: Graph) -> list[Node]:
    """The nodes whose results reach a graph output (all ops are pure, so the rest is dead)."""
    needed: set[Value] = set(graph.outputs.values())
    keep: list[Node] = []
    for node in reversed(graph.nodes):
        if any(o in needed for o in node.outputs):
            keep.append(node)
            needed.update(v for v in node.inputs if v is not None)
    keep.reverse()
    return keep


def rebuild(
    graph: Graph,
    nodes: list[Node],
    *,
    outputs: Mapping[str, Value] | None = None,
    new_params: Mapping[str, Value] | None = None,
    new_weights: Mapping[str, np.ndarray] | None = None,
    prune: bool = True,
) -> Graph:
    """A new graph with `nodes` (sorted), extra params, and unused params (and weights) dropped.

    The weight store is rebuilt only when params change; kept arrays are not copied
    (memory-mapped ones stay mapped).
    """
    params = dict(graph.params)
    params.update(new_params or {})
    result = Graph(
        name=graph.name,
        inputs=dict(graph.inputs),
        params=params,
        nodes=topo_sort(nodes, list(graph.inputs.values()) + list(params.values())),
        outputs=dict(outputs if outputs is not None else graph.outputs),
        meta=dict(graph.meta),
        weights=graph.weights,
    )
    if prune:
        result.nodes = live_nodes(result)
        used = {v for n in result.nodes for v in n.inputs if v is not None} | set(
            result.outputs.values()
        )
        result.params = {name: v for name, v in params.items() if v in used}
        if SPARSITY in result.meta:  # records of params no longer in the graph go with them
            result.meta = with_records(result.meta, {}, result.params)
    if graph.weights is not None and (set(result.params) != set(graph.params) or new_weights):
        added = dict(new_weights or {})
        result.weights = WeightStore(
            {
                name: added[name] if name in added else graph.weights[name]
                for name in result.stored_names()
            }
        )
    return result


def fresh_param_name(graph: Graph, wanted: str, taken: Iterable[str] = ()) -> str:
    """`wanted`, or `wanted` with a numeric suffix before the last dotted part, if taken."""
    used = set(graph.params) | set(taken)
    if wanted not in used:
        return wanted
    stem, dot, last = wanted.rpartition(".")
    n = 1
    while True:
        candidate = f"{stem}_{n}{dot}{last}" if dot else f"{wanted}_{n}"
        if candidate not in used:
            return candidate
        n += 1


def common_prefix(names: Iterable[str]) -> str:
    """The longest shared dotted prefix.

    'layers.0.attn.q.weight', 'layers.0.mlp.up.weight' -> 'layers.0.'.
    """
    parts = [n.split(".") for n in names]
    prefix: list[str] = []
    for segs in zip(*parts):
        if len(set(segs)) != 1:
            break
        prefix.append(segs[0])
    # never swallow the whole name (identical names cannot happen; keep at least the last part out)
    shortest = min(len(p) for p in parts)
    prefix = prefix[: shortest - 1]
    return "".join(p + "." for p in prefix)
