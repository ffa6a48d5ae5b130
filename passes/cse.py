"""cse: common-subexpression elimination.

Two nodes with the same op, the same input values (by identity) and the same
attributes compute the same results (every op is pure), so the later one is
replaced by the earlier. One forward sweep suffices: inputs are canonicalised
before a node's key is taken, so chains of duplicates collapse together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from irgraph.ir import Graph, Node, Value
from irgraph.passes.context import PassContext
from irgraph.passes.graphs import rebuild
from irgraph.passes.manager import EXACT, Pass, PassResult, register_pass


def _key(node: Node, inputs: tuple[Value | None, ...]) -> tuple[Any, ...]:
    attrs = tuple(sorted((k, repr(v)) for k, v in node.attrs.items()))
    return (node.op, tuple(id(v) if v is not None else None for v in inputs), attrs)


@register_pass
@dataclass(frozen=True)
class CommonSubexpressionElimination(Pass):
    name = "cse"
    kind = EXACT
    summary = "merge nodes with the same op, inputs and attributes"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        subst: dict[Value, Value] = {}
        seen: dict[tuple[Any, ...], Node] = {}
        nodes: list[Node] = []
        merged = 0
        for node in graph.nodes:
            inputs = tuple(subst.get(v, v) if v is not None else None for v in node.inputs)
            key = _key(node, inputs)
            first = seen.get(key)
            if first is not None:
                subst.update(zip(node.outputs, first.outputs))
                merged += 1
                continue
            same = all(a is b for a, b in zip(inputs, node.inputs))
            node = node if same else Node(node.op, inputs, node.outputs, node.attrs)
            seen[key] = node
            nodes.append(node)
        if not merged:
            return PassResult(graph, False)
        outputs = {name: subst.get(v, v) for name, v in graph.outputs.items()}
        return PassResult(rebuild(graph, nodes, outputs=outputs), True, f"merged {merged} nodes")
