"""What changed between two graphs, for `irgraph view`: added, removed and rewritten nodes.

Two ways to know, which must agree:

- `recorded_diff(before, after)`: what a pass pipeline recorded. The rewriter keeps every
  node it did not touch (the same `Node` object), rebuilds a node whose inputs it replaced
  around the same output values (rewritten), emits new nodes with new outputs (added) and
  drops nodes left without users (removed); identity says which is which.
- `structural_diff(before, after)`: two graphs read from disk, where identity is gone.
  Nodes are matched in topological order by op, attributes, parameter names (and types) and
  matched inputs; a node whose parameters and attributes match an unmatched node but whose
  non-parameter inputs come from changed nodes is rewritten, anything else unmatched is
  added (in `after`) or removed (from `before`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irgraph.ir import Graph, Node, Value
from irgraph.printer import format_attr
from irgraph.registry import get_op

ADDED, REWRITTEN, REMOVED = "added", "rewritten", "removed"


@dataclass(frozen=True)
class Diff:
    """`status` of each changed node of `after`; `removed` nodes of `before`; and, for drawing
    the removed ones, the `after` value each matched `before` value became."""

    mode: str  # "recorded" or "structural"
    status: dict[Node, str] = field(default_factory=dict)
    removed: list[Node] = field(default_factory=list)
    value_map: dict[Value, Value] = field(default_factory=dict)  # before value -> after value

    def counts(self) -> dict[str, int]:
        statuses = list(self.status.values())
        return {
            ADDED: statuses.count(ADDED),
            REWRITTEN: statuses.count(REWRITTEN),
            REMOVED: len(self.removed),
        }


def recorded_diff(before: Graph, after: Graph) -> Diff:
    """The changes a pipeline's rewriter made, read from node and value identity."""
    kept = set(before.nodes)
    produced = {v: n for n in before.nodes for v in n.outputs}
    status: dict[Node, str] = {}
    reused: set[Node] = set()
    for node in after.nodes:
        if node in kept:
            reused.add(node)
        elif node.outputs[0] in produced:
            status[node] = REWRITTEN
            reused.add(produced[node.outputs[0]])
        else:
            status[node] = ADDED
    values = set(after.values())
    mapping = {v: v for v in before.values() if v in values}
    removed = [n for n in before.nodes if n not in reused]
    return Diff("recorded", status, removed, mapping)


def _attrs_key(node: Node) -> tuple[tuple[str, str], ...]:
    shown = get_op(node.op).non_default(node.attrs)
    return tuple(sorted((k, format_attr(v)) for k, v in shown.items()))


def _loose_key(node: Node) -> tuple[object, ...]:
    """What a rewritten node keeps: op, attributes, parameters by slot, output types."""
    params = tuple(
        (i, v.param, str(v.type)) for i, v in enumerate(node.inputs) if v is not None and v.param
    )
    return (node.op, _attrs_key(node), params, tuple(str(v.type) for v in node.outputs))


def structural_diff(before: Graph, after: Graph) -> Diff:
    """Match `after`'s nodes to `before`'s by structure; see the module docstring."""
    vmap: dict[Value, Value] = {}  # after value -> before value
    for table_a, table_b in ((after.inputs, before.inputs), (after.params, before.params)):
        for name, v in table_a.items():
            old = table_b.get(name)
            if old is not None and old.type == v.type:
                vmap[v] = old
    exact: dict[tuple[object, ...], list[Node]] = {}
    loose: dict[tuple[object, ...], list[Node]] = {}
    for node in before.nodes:
        exact.setdefault((node.op, _attrs_key(node), node.inputs), []).append(node)
        loose.setdefault(_loose_key(node), []).append(node)
    matched: set[Node] = set()
    mapped: set[Value] = set(vmap.values())
    status: dict[Node, str] = {}
    unmatched = object()
    for node in after.nodes:
        ins = [vmap.get(v, unmatched) if v is not None else None for v in node.inputs]
        twin = None
        if unmatched not in ins:
            key = (node.op, _attrs_key(node), tuple(ins))
            twin = next((n for n in exact.get(key, ()) if n not in matched), None)
        if twin is None:
            twin = next(
                (
                    n
                    for n in loose.get(_loose_key(node), ())
                    if n not in matched and _rewired(n, ins, unmatched, mapped)
                ),
                None,
            )
            status[node] = ADDED if twin is None else REWRITTEN
        if twin is not None:
            matched.add(twin)
            for new, old in zip(node.outputs, twin.outputs):
                vmap[new] = old
                mapped.add(old)
    removed = [n for n in before.nodes if n not in matched]
    return Diff("structural", status, removed, {old: new for new, old in vmap.items()})


def _rewired(old: Node, ins: list[object], unmatched: object, mapped: set[Value]) -> bool:
    """Could `old` be a node whose changed inputs now come from new nodes?"""
    if len(old.inputs) != len(ins):
        return False
    for was, now in zip(old.inputs, ins):
        if now is unmatched:
            if was is None or was.param or was in mapped:
                return False
        elif now is not was:
            return False
    return True
