"""Per-input-channel scales folded into what produces a linear's input (AWQ, SmoothQuant).

For the linears that read one activation x (q/k/v after a norm; gate/up; the q/k/v and MLP-in
of a shared-norm parallel block), x's channels can be divided by s and the linears' weight
columns multiplied by it without changing the float function, when whatever produces x takes
the division:

    rms_norm / layer_norm / add_rms_norm (normed)   weight (and bias) / s
    glu(gate, up)                                   rows of up's linear (and its bias) / s
    relu(h), h a linear's output                    rows of that linear (and its bias) / s
    linear                                          rows of that linear (and its bias) / s

A group that cannot be folded says why (`Group.why_not`): its x is read by anything but its
linears, or is a graph input or output, or its producer is none of the above (a norm without
weight; gelu; attention output: v→o would change the KV cache the graph returns), or its
producer's parameters are read elsewhere or are not float. Folding into a producer commutes
with scaling it as a consumer, so groups can be folded in any order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from irgraph.ir import Graph, Node, Value
from irgraph.passes.calibrate import linear_inputs
from irgraph.weights import WeightStore

NORMS = {"rms_norm": 0, "layer_norm": 0, "add_rms_norm": 1}  # op -> output that is normed
THROUGH = {  # op -> input that a scale passes through: op(.., h / s, ..) = op(.., h, ..) / s
    "glu": 1,  # act(gate) · up/s = (act(gate) · up)/s
    "relu": 0,  # relu(h/s) = relu(h)/s for s > 0 (OPT's fc1 -> fc2 in llm-awq)
}


@dataclass(frozen=True)
class Group:
    """Linears (by weight) reading one activation x, and where x's scale is folded."""

    x: Value
    params: tuple[str, ...]
    vectors: tuple[str, ...]  # producer params divided by s elementwise (norm weight, bias)
    rows: tuple[str, ...]  # producer params whose rows (axis 0) are divided by s
    offset: float  # the norm's weight_offset: (w + offset) / s - offset
    why_not: str  # non-empty: not scaled, and why


def find_groups(graph: Graph, names: Sequence[str]) -> list[Group]:
    """The activations read by linears of `names`, each with its fold (or why it has none)."""
    uses = linear_inputs(graph, names)
    readers: dict[Value, list[Node]] = {}
    param_uses: dict[str, int] = {}
    for each in graph.nodes:
        for v in each.inputs:
            if v is not None:
                readers.setdefault(v, []).append(each)
                if v.param is not None:
                    param_uses[v.param] = param_uses.get(v.param, 0) + 1
    producers = graph.producers()
    outputs = set(graph.outputs.values())
    groups = []
    xs = dict.fromkeys(x for p in uses if len(uses[p]) == 1 for x in uses[p])
    for x in xs:
        params = tuple(p for p in uses if uses[p] == [x])
        why = ""
        for reader in readers.get(x, []):
            w = reader.inputs[1] if reader.op == "linear" else None
            if w is None or w.param not in params or reader.inputs[0] is not x:
                why = f"its input is also read by {reader.op}"
            elif param_uses.get(w.param, 0) != 1:
                why = f"@{w.param} is read more than once"
        if x in outputs:
            why = "its input is a graph output"
        vectors: tuple[str, ...] = ()
        rows: tuple[str, ...] = ()
        offset = 0.0
        node = producers.get(x)
        if node is None:
            why = why or "its input is a graph input"
        elif node.op in NORMS and node.outputs[NORMS[node.op]] is x:
            w_slot = 2 if node.op == "add_rms_norm" else 1
            ps = [node.inputs[w_slot], *(node.inputs[2:3] if node.op == "layer_norm" else [])]
            vectors = tuple(v.param for v in ps if v is not None and v.param is not None)
            offset = float(node.attrs.get("weight_offset", 0.0))
            if not vectors or ps[0] is None or ps[0].param is None:
                why = why or f"{node.op} has no weight to fold into"
        elif node.op in THROUGH or node.op == "linear":
            lin: Node | None = node
            if node.op in THROUGH:
                h = node.inputs[THROUGH[node.op]]
                lin = producers.get(h) if h is not None and len(readers[h]) == 1 else None
            if lin is None or lin.op != "linear":
                why = why or f"{node.op}'s input is not a linear's alone"
            else:
                rows = tuple(v.param for v in lin.inputs[1:] if v is not None and v.param)
                if len(rows) != len([v for v in lin.inputs[1:] if v is not None]):
                    why = why or "the producing linear's weight is computed"
        else:
            why = why or f"it is produced by {node.op} (no weight to fold into)"
        producer_params = (*vectors, *rows)
        if any(param_uses.get(p, 0) != 1 for p in producer_params):
            why = why or "the producer's parameters are read elsewhere"
        if any(not graph.params[p].type.dtype.is_float for p in producer_params):
            why = why or "the producer's parameters are not float"
        groups.append(Group(x, params, vectors, rows, offset, why))
    return groups


def fold(group: Group, s: np.ndarray, get: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    """The new values of the group's weights (columns · s) and its producer's params (/ s).

    `get(name)` is the param's current float value; s [K] is positive.
    """
    updates = {name: get(name) * s for name in group.params}
    for name in group.vectors:
        off = group.offset if name == group.vectors[0] else 0.0
        updates[name] = (get(name) + off) / s - off
    for name in group.rows:
        a = get(name)
        updates[name] = a / s.reshape(-1, *([1] * (a.ndim - 1)))
    return updates


def with_weights(graph: Graph, updates: Mapping[str, np.ndarray]) -> Graph:
    """`graph` whose weight store has `updates` (float params, cast to their declared dtype)."""
    if graph.weights is None:
        return graph
    arrays = {n: graph.weights[n] for n in graph.weights}
    for name, a in updates.items():
        arrays[name] = np.asarray(a).astype(graph.params[name].type.dtype.numpy)
    return Graph(
        graph.name,
        dict(graph.inputs),
        dict(graph.params),
        list(graph.nodes),
        dict(graph.outputs),
        dict(graph.meta),
        WeightStore(arrays),
    )
