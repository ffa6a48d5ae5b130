"""constant-fold: compute nodes whose inputs are all parameters once, into a new parameter.

`transpose(@w)`, `cast(@w)`, `mul(@a, @b)` are the same on every call; the pass
runs them through the op's reference implementation and stores the result as a
weight named after the node (`<first param>.folded`). Results larger than
`max_elements` stay unfolded (they would inflate the weights file). Structure-only
graphs (no weights) are left as they are: there is nothing to compute with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irgraph.ir import Graph, Node, Value
from irgraph.passes.context import PassContext
from irgraph.passes.graphs import fresh_param_name, rebuild
from irgraph.passes.manager import EXACT, Pass, PassResult, option, register_pass
from irgraph.registry import get_op


@register_pass
@dataclass(frozen=True)
class ConstantFold(Pass):
    name = "constant-fold"
    kind = EXACT
    summary = "precompute nodes whose inputs are all weights"
    max_elements: int = option(1 << 24, min=0, doc="largest result (elements) stored as a weight")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        if graph.weights is None:
            return PassResult(graph, False, "structure-only graph: nothing to fold")
        subst: dict[Value, Value] = {}
        params: dict[str, Value] = {}
        arrays: dict[str, np.ndarray] = {}
        nodes: list[Node] = []
        values: dict[Value, np.ndarray] = {}
        for node in graph.nodes:
            inputs = tuple(subst.get(v, v) if v is not None else None for v in node.inputs)
            foldable = any(v is not None for v in inputs) and all(
                v is None or v.param for v in inputs
            )
            if foldable and all(
                o.type.numel() <= self.max_elements for o in node.outputs if not o.type.symbols
            ):
                opdef = get_op(node.op)
                args = [
                    None
                    if v is None
                    else values[v]
                    if v in values
                    else np.asarray(graph.weight(v.param or ""))
                    for v in inputs
                ]  # `foldable`: every present input is folded or a parameter
                results = opdef.ref(*opdef.pad(args), **node.attrs)
                for out, res in zip(node.outputs, results):
                    first = next(v.param for v in inputs if v is not None and v.param)
                    name = fresh_param_name(
                        graph, f"{first.removesuffix('.folded')}.folded", params
                    )
                    p = Value(out.type, hint=out.hint, param=name)
                    params[name] = p
                    arrays[name] = np.ascontiguousarray(
                        np.asarray(res).astype(out.type.dtype.numpy)
                    )
                    values[p] = arrays[name]
                    subst[out] = p
                continue
            same = all(a is b for a, b in zip(inputs, node.inputs))
            nodes.append(node if same else Node(node.op, inputs, node.outputs, node.attrs))
        if not params:
            return PassResult(graph, False)
        outputs = {name: subst.get(v, v) for name, v in graph.outputs.items()}
        folded = len(graph.nodes) - len(nodes)
        return PassResult(
            rebuild(graph, nodes, outputs=outputs, new_params=params, new_weights=arrays),
            True,
            f"folded {folded} nodes",
        )
