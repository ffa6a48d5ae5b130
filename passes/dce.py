"""dce: remove nodes whose results reach no graph output, and parameters nothing reads.

Every op is pure, so a node is dead exactly when none of its results is needed.
Graph inputs stay (they are the model's interface), even when unused.
"""

from __future__ import annotations

from dataclasses import dataclass

from irgraph.ir import Graph
from irgraph.passes.context import PassContext
from irgraph.passes.graphs import live_nodes, rebuild
from irgraph.passes.manager import EXACT, Pass, PassResult, register_pass


@register_pass
@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    name = "dce"
    kind = EXACT
    summary = "remove nodes and params that no output needs"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = rebuild(graph, live_nodes(graph))
        nodes, params = len(graph.nodes) - len(out.nodes), len(graph.params) - len(out.params)
        if not nodes and not params:
            return PassResult(graph, False)
        return PassResult(out, True, f"removed {nodes} nodes, {params} params")
