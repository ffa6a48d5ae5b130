"""last-position-logits: a second logits output for the last position only, `logits_last`.

A generation step samples from the last position's logits, but a prompt of S
tokens runs the LM head over all S positions (for a 125M LLaMA's 32000-token
vocabulary, ~18% of its prefill FLOPs). This pass re-applies the head (the
per-position ops that end in `logits`: final norm, linear, logit scale, ...) to
the last hidden row and adds the result as the output `logits_last`
[batch, 1, vocab] beside `logits`. Backends give the two output sets their own
entry points over the same weights (`entry_graphs`): `forward` returns `logits`,
`forward_last` returns `logits_last`. Exact: every op on the path works row by row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from irgraph.ir import Graph, Node, Value
from irgraph.lm import LOGITS, LOGITS_LAST
from irgraph.passes.context import PassContext
from irgraph.passes.graphs import GraphIndex, live_nodes, rebuild
from irgraph.passes.manager import EXACT, Pass, PassResult, register_pass
from irgraph.passes.rewrite import Candidate, Miss, Rewriter, Rule, apply_rules

# Ops that compute each position from that position alone (their other inputs are parameters).
PER_POSITION = frozenset(
    {"linear", "matmul", "scale", "cast", "rms_norm", "layer_norm", "tanh", "sigmoid", "neg"}
)
FORWARD, FORWARD_LAST = "forward", "forward_last"


def _head(index: GraphIndex, graph: Graph) -> tuple[list[Node], str]:
    """The per-position ops ending in `logits` (first op first), or ([], why there are none)."""
    chain: list[Node] = []
    v: Value = graph.outputs[LOGITS]
    while (node := index.producer.get(v)) is not None and node.op in PER_POSITION:
        others = node.inputs[1:]
        if any(o is not None and o.param is None for o in others) or v.type.rank != 3:
            break
        if node.op == "matmul" and node.arg(1).type.rank != 2:
            break
        chain.insert(0, node)
        v = node.arg(0)
    if chain:
        return chain, ""
    if node is None:
        return [], "the logits are not computed by a node"
    return [], f"the logits come from a {node.op} that mixes positions"


class LastPositionRule(Rule):
    name = "last-position-logits"
    summary = "add output logits_last [batch, 1, vocab]: the LM head on the last position only"

    def candidates(self, index: GraphIndex) -> Iterator[Candidate | Miss]:
        graph = index.graph
        logits = graph.outputs.get(LOGITS)
        where = f"output {LOGITS}"
        if logits is None:
            yield Miss("graph", f"it has no output named {LOGITS!r}")
        elif LOGITS_LAST in graph.outputs:
            yield Miss(where, f"the graph already has {LOGITS_LAST!r}")
        elif logits.type.rank != 3:
            yield Miss(where, f"the logits are {logits.type}, not [batch, seq, vocab]")
        elif logits.type.shape[1] == 1:
            yield Miss(where, "the logits already cover one position")
        else:
            chain, why = _head(index, graph)
            if not chain:
                yield Miss(where, why)
            else:
                yield Candidate(where, tuple(chain), {"chain": tuple(chain)})

    def rewrite(self, rw: Rewriter, cand: Candidate) -> None:
        first = cand.chain[0]
        v = rw.emit("slice", first.inputs[0], axis=1, start=-1, hint="last_hidden")
        for node in cand.chain:
            hint = LOGITS_LAST if node is cand.chain[-1] else f"{node.outputs[0].hint or 'h'}_last"
            v = rw.emit(node.op, v, *node.inputs[1:], hint=hint, **node.attrs)
        rw.add_output(LOGITS_LAST, v)


@register_pass
@dataclass(frozen=True)
class LastPositionLogits(Pass):
    name = "last-position-logits"
    kind = EXACT
    summary = LastPositionRule.summary

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        out, fired = apply_rules(graph, [LastPositionRule()])
        return PassResult(out, fired > 0, f"added {LOGITS_LAST}" if fired else "")


def entry_graphs(graph: Graph) -> dict[str, Graph]:
    """The graph per entry point: `forward` (all outputs but logits_last) and, when the graph
    has logits_last, `forward_last` (all outputs but logits). Each keeps every parameter of
    `graph` (backends pass one weight list to both) and only the nodes its outputs need."""
    if LOGITS_LAST not in graph.outputs:
        return {FORWARD: graph}
    result = {}
    for entry, drop in ((FORWARD, LOGITS_LAST), (FORWARD_LAST, LOGITS)):
        part = rebuild(
            graph,
            graph.nodes,
            outputs={n: v for n, v in graph.outputs.items() if n != drop},
            prune=False,
        )
        part.nodes = live_nodes(part)
        result[entry] = part
    return result
