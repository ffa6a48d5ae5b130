"""Declare a graph's parameters with other types (f16, bf16, a quantized form), graph unchanged.

An importer builds the float graph of a model and then declares each weight as its file stores
it: a bf16 tensor as bf16, a GGUF q4_0 block tensor as `i4<g32,sym,f16>`. Every op computes in
fp32 whatever its weight's storage, so only ops whose *result* type follows a weight change
(`embedding` returns rows of its table): such a result is produced in its new type and cast
back to the type the builder gave it, so every later value, and the printed graph after it,
stays as it was.
"""

from __future__ import annotations

from collections.abc import Mapping

from irgraph.ir import Graph, Node, Value
from irgraph.registry import get_op
from irgraph.types import TensorType
from irgraph.verifier import infer_node


def retype_params(graph: Graph, types: Mapping[str, TensorType]) -> Graph:
    """A copy of `graph` whose params named in `types` are declared with those types.

    The weight store is kept as is: the caller attaches the arrays the new types read.
    """
    swap: dict[Value, Value] = {}
    params: dict[str, Value] = {}
    for name, v in graph.params.items():
        want = types.get(name, v.type)
        if want == v.type:
            params[name] = v
            continue
        params[name] = swap[v] = Value(want, hint=v.hint, param=name)
    if not swap:
        return graph
    nodes: list[Node] = []
    for node in graph.nodes:
        inputs = tuple(swap.get(v, v) if v is not None else None for v in node.inputs)
        if all(a is b for a, b in zip(inputs, node.inputs)):
            nodes.append(node)
            continue
        new_types = infer_node(get_op(node.op), inputs, node.attrs)
        # the builder's outputs keep their identity: a changed result is made raw, then cast
        raw = [o if t == o.type else Value(t, hint=o.hint) for o, t in zip(node.outputs, new_types)]
        nodes.append(Node(node.op, inputs, tuple(raw), node.attrs))
        nodes += [
            Node("cast", (r,), (old,), {"dtype": str(old.type.dtype)})
            for r, old in zip(raw, node.outputs)
            if r is not old
        ]
    return Graph(
        name=graph.name,
        inputs=dict(graph.inputs),
        params=params,
        nodes=nodes,
        outputs=dict(graph.outputs),
        meta=dict(graph.meta),
        weights=graph.weights,
    )


__all__ = ["retype_params"]
