"""Declare parameters in the checkpoint's storage dtype (bf16/f16) while computing in fp32.

The builder declares fp32 parameters. A bf16 checkpoint keeps its bf16
tensors (half the bytes, memory-mapped as they are); every op computes in
fp32 whatever its weight dtype, so only ops whose *output* dtype follows a
weight need care: `embedding` returns rows of its table, so a cast back to
the dtype the builder chose follows each lookup of a retyped table.
"""

from __future__ import annotations

from collections.abc import Mapping

from irgraph.dtypes import DType
from irgraph.ir import Graph, Node, Value
from irgraph.registry import get_op
from irgraph.verifier import infer_node


def retype_params(graph: Graph, dtypes: Mapping[str, DType]) -> Graph:
    """A copy of `graph` whose params named in `dtypes` are declared with those dtypes."""
    swap: dict[Value, Value] = {}
    params: dict[str, Value] = {}
    for name, v in graph.params.items():
        want = dtypes.get(name, v.type.dtype)
        if want is v.type.dtype or not v.type.dtype.is_float or not want.is_float:
            params[name] = v
            continue
        params[name] = swap[v] = Value(v.type.with_dtype(want), hint=v.hint, param=name)
    if not swap:
        return graph
    nodes: list[Node] = []
    for node in graph.nodes:
        inputs = tuple(swap.get(v, v) if v is not None else None for v in node.inputs)
        if inputs == node.inputs:
            nodes.append(node)
            continue
        types = infer_node(get_op(node.op), inputs, node.attrs)
        # keep the builder's output types: a changed result is produced raw, then cast back
        raw = [
            old if t == old.type else Value(t, hint=old.hint) for old, t in zip(node.outputs, types)
        ]
        nodes.append(Node(node.op, inputs, tuple(raw), node.attrs))
        nodes += [
            Node("cast", (r,), (old,), {"dtype": old.type.dtype.value})
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
