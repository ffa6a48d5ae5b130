"""fuse-qkv: one linear for the q, k and v projections that read the same input.

LLaMA-style blocks compute q, k and v with three matmuls over the same
normalised input; one matmul with the weights stacked along the output dim
(`[q_out + k_out + v_out, hidden]`) and a split computes the same numbers with
one kernel launch and one read of the input. Cross-attention (q from the
decoder, k/v from the encoder) fuses just k and v.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from irgraph.ir import Graph, Node
from irgraph.passes.context import PassContext
from irgraph.passes.graphs import GraphIndex
from irgraph.passes.manager import EXACT, Pass, PassResult, register_pass
from irgraph.passes.projections import (
    ATTENTION,
    QKV_SLOTS,
    fuse_linears,
    group_problem,
    source_linear,
)
from irgraph.passes.rewrite import Candidate, Miss, Rewriter, Rule, apply_rules


class FuseQkvRule(Rule):
    name = "fuse-qkv"
    summary = "q/k/v linears over one input -> one linear + split"

    def candidates(self, index: GraphIndex) -> Iterator[Candidate | Miss]:
        for node in index.graph.nodes:
            if node.op != ATTENTION:
                continue
            where = index.describe(node)
            linears: list[Node] = []
            missing = []
            for slot, v in zip(QKV_SLOTS, node.inputs[:3]):
                lin, found = source_linear(index, v)
                if lin is None:
                    missing.append(f"{slot} comes from {found}")
                elif lin not in linears:
                    linears.append(lin)
            groups: dict[int, list[Node]] = {}
            for lin in linears:
                groups.setdefault(id(lin.inputs[0]), []).append(lin)
            best = max(groups.values(), key=len, default=[])
            if len(best) >= 2:
                yield Candidate(
                    where, tuple(best), {"x": best[0].inputs[0], "linears": tuple(best)}
                )
            elif missing:
                yield Miss(where, "not every projection is a linear: " + "; ".join(missing))
            elif len(linears) == 1:
                yield Miss(where, "q, k and v already come from one linear")
            else:
                yield Miss(where, "the q/k/v linears read different inputs")

    def check(self, index: GraphIndex, cand: Candidate) -> str | None:
        return group_problem(index, cand.linears)

    def rewrite(self, rw: Rewriter, cand: Candidate) -> None:
        fuse_linears(rw, cand.x, cand.linears, "qkv")


@register_pass
@dataclass(frozen=True)
class FuseQkv(Pass):
    name = "fuse-qkv"
    kind = EXACT
    summary = FuseQkvRule.summary

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        out, fired = apply_rules(graph, [FuseQkvRule()])
        return PassResult(out, fired > 0, f"fused {fired} attention projections")
