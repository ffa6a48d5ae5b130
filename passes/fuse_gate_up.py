"""fuse-gate-up: one linear for a gated MLP's gate and up projections.

SwiGLU/GeGLU MLPs compute act(x·W_gateᵀ) · (x·W_upᵀ): two matmuls over the same
input. Stacking the weights (`[2·ffn, hidden]`) makes it one matmul and a split.
Matches `glu(gate, up)` and the spelled-out `mul(act(gate), up)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from irgraph.ir import Graph, Node, Value
from irgraph.passes.context import PassContext
from irgraph.passes.graphs import GraphIndex
from irgraph.passes.manager import EXACT, Pass, PassResult, option, register_pass
from irgraph.passes.projections import (
    fuse_linears,
    group_problem,
    is_activation,
    source_linear,
    width_problem,
)
from irgraph.passes.rewrite import Candidate, Miss, Rewriter, Rule, apply_rules
from irgraph.registry import Category, get_op


def _through_activation(index: GraphIndex, v: Value | None) -> tuple[Node | None, str]:
    node = index.producer.get(v) if v is not None else None
    if node is not None and is_activation(node):
        v = node.inputs[0]
    return source_linear(index, v)


class FuseGateUpRule(Rule):
    name = "fuse-gate-up"
    summary = "gate and up linears of a gated MLP -> one linear + split"

    def candidates(self, index: GraphIndex) -> Iterator[Candidate | Miss]:
        for node in index.graph.nodes:
            opdef = get_op(node.op)
            if not opdef.gating or len(node.inputs) != 2:
                continue
            where = index.describe(node)
            spelled_out = opdef.category is not Category.GATE  # mul(act(gate), up), not glu
            trace = _through_activation if spelled_out else source_linear
            (gate, why_g), (up, why_u) = trace(index, node.inputs[0]), trace(index, node.inputs[1])
            if spelled_out and (gate is None or up is None):
                continue  # most products are not MLP gates; only report glu nodes
            if gate is None or up is None:
                yield Miss(
                    where,
                    f"the {'gate' if gate is None else 'up'} input comes from {why_g or why_u}",
                )
            elif gate is up:
                yield Miss(where, "gate and up already come from one linear")
            elif gate.inputs[0] is not up.inputs[0]:
                yield Miss(where, "gate and up read different inputs")
            else:
                yield Candidate(where, (gate, up), {"x": gate.inputs[0], "linears": (gate, up)})

    def __init__(self, max_width: int = 0):
        self.max_width = max_width

    def check(self, index: GraphIndex, cand: Candidate) -> str | None:
        return group_problem(index, cand.linears, quantized_ok=True) or width_problem(
            cand.linears, self.max_width
        )

    def rewrite(self, rw: Rewriter, cand: Candidate) -> None:
        fuse_linears(rw, cand.x, cand.linears, "gate_up")


@register_pass
@dataclass(frozen=True)
class FuseGateUp(Pass):
    name = "fuse-gate-up"
    kind = EXACT
    summary = FuseGateUpRule.summary
    max_width: int = option(
        0,
        min=0,
        doc="fuse while the summed output rows <= max_width x input features; 0: unlimited",
    )

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        out, fired = apply_rules(graph, [FuseGateUpRule(self.max_width)])
        return PassResult(out, fired > 0, f"fused {fired} gated MLPs")
