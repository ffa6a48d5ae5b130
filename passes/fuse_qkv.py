"""fuse-qkv: one linear for the q, k and v projections that read the same input.

LLaMA-style blocks compute q, k and v with three matmuls over the same
normalised input; one matmul with the weights stacked along the output dim
(`[q_out + k_out + v_out, hidden]`) and a split computes the same numbers with
one kernel launch and one read of the input. Cross-attention (q from the
decoder, k/v from the encoder) fuses just k and v. Multi-head latent attention
(DeepSeek-V2) fuses its down-projections (q_a and kv_a), which read the block's
normalised input before their own norms.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from irgraph.ir import Graph, Node, Value
from irgraph.passes.context import PassContext
from irgraph.passes.graphs import GraphIndex
from irgraph.passes.manager import EXACT, Pass, PassResult, option, register_pass
from irgraph.passes.projections import (
    ATTENTION,
    QKV_SLOTS,
    fuse_linears,
    group_problem,
    is_norm,
    source_linear,
    transparent,
    width_problem,
)
from irgraph.passes.rewrite import Candidate, Miss, Rewriter, Rule, apply_rules

LATENT_ATTENTION = "latent_attention"


def _one_source(index: GraphIndex, v: Value | None) -> tuple[list[Node], str]:
    lin, found = source_linear(index, v)
    return ([lin] if lin is not None else []), found


def _latent_sources(index: GraphIndex, v: Value | None) -> tuple[list[Node], str]:
    """Every linear on the paths to a latent_attention input: its up- and down-projections.

    The paths run through data-moving ops, concats (rotary and plain parts of q), the latent
    norms and the linears themselves.
    """
    chain: list[Node] = []
    found = "nothing"
    frontier = [v]
    for _ in range(16):
        nxt: list[Value | None] = []
        for cur in frontier:
            node = index.producer.get(cur) if cur is not None else None
            if node is None:
                found = "a parameter" if cur is not None and cur.param else "a graph input"
            elif node.op == "concat":
                nxt.extend(node.inputs)
            elif node.op == "linear" or transparent(node) or is_norm(node):
                if node.op == "linear" and node not in chain:
                    chain.append(node)
                nxt.append(node.inputs[0])
            else:
                found = f"a {node.op}"
        frontier = nxt
        if not frontier:
            break
    return chain, found


class FuseQkvRule(Rule):
    name = "fuse-qkv"
    summary = "q/k/v linears over one input -> one linear + split"

    def candidates(self, index: GraphIndex) -> Iterator[Candidate | Miss]:
        for node in index.graph.nodes:
            if node.op not in (ATTENTION, LATENT_ATTENTION):
                continue
            where = index.describe(node)
            linears: list[Node] = []
            missing = []
            for slot, v in zip(QKV_SLOTS, node.inputs[:3]):
                found_linears, found = (
                    _latent_sources(index, v)
                    if node.op == LATENT_ATTENTION
                    else _one_source(index, v)
                )
                if not found_linears:
                    missing.append(f"{slot} comes from {found}")
                linears.extend(lin for lin in found_linears if lin not in linears)
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

    def __init__(self, max_width: int = 0):
        self.max_width = max_width

    def check(self, index: GraphIndex, cand: Candidate) -> str | None:
        return group_problem(index, cand.linears, quantized_ok=True) or width_problem(
            cand.linears, self.max_width
        )

    def rewrite(self, rw: Rewriter, cand: Candidate) -> None:
        fuse_linears(rw, cand.x, cand.linears, "qkv")


@register_pass
@dataclass(frozen=True)
class FuseQkv(Pass):
    name = "fuse-qkv"
    kind = EXACT
    summary = FuseQkvRule.summary
    max_width: int = option(
        0,
        min=0,
        doc="fuse while the summed output rows <= max_width x input features; 0: unlimited",
    )

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        out, fired = apply_rules(graph, [FuseQkvRule(self.max_width)])
        return PassResult(out, fired > 0, f"fused {fired} attention projections")
