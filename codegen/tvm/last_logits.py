"""`forward_last`: the same model with logits for the last position only, for generation.

`generate` samples from the last position's logits, but a prompt of S tokens runs
the LM head over all S positions in `forward` (for the 125M LLaMA's 32000-token
vocabulary, ~18% of its prefill FLOPs). TVM artifacts therefore carry a second
Relax function over the same inputs and weights whose LM head reads only the
last hidden row; `forward` keeps the graph's own outputs (every position).
"""

from __future__ import annotations

from irgraph.ir import Graph
from irgraph.passes.graphs import rebuild
from irgraph.passes.rewrite import Rewriter

LOGITS = "logits"


def last_position_graph(graph: Graph) -> Graph | None:
    """`graph` with `logits` [batch, 1, vocab] from the last position; None when the logits are not
    one linear/matmul over [batch, seq, hidden] (the head's input then runs per position anyway)."""
    out = graph.outputs.get(LOGITS)
    head = next((n for n in graph.nodes if out is not None and out in n.outputs), None)
    if head is None or head.op not in ("linear", "matmul") or out is None or out.type.rank != 3:
        return None
    if out.type.shape[1] == 1:
        return None  # already one position
    rw = Rewriter(graph).at(head)
    last = rw.emit("slice", head.inputs[0], axis=1, start=-1, hint="last_hidden")
    logits = rw.emit(head.op, last, *head.inputs[1:], hint=LOGITS, **head.attrs)
    added = [n for nodes in rw.inserted.values() for n in nodes]
    return rebuild(
        graph,
        [n for n in graph.nodes if n is not head] + added,
        outputs={**graph.outputs, LOGITS: logits},
    )
