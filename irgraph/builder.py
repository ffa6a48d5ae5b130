"""GraphBuilder: create nodes with their types inferred as you go.

    b = GraphBuilder("mlp")
    x = b.input("x", "f32[batch, seq, 64]")
    w = b.param("up.weight", "f32[256, 64]")
    h = b.silu(b.linear(x, w), hint="h")
    b.output("y", h)
    graph = b.build(weights)

Any registered op is a method (`b.rms_norm(x, w, eps=1e-5)`); multi-result
ops return a tuple. Type errors surface at the call, naming the op.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from irgraph.errors import IRError
from irgraph.ir import Graph, Node, Value
from irgraph.registry import get_op
from irgraph.types import TensorType, parse_type
from irgraph.verifier import infer_node


def as_type(t: TensorType | str) -> TensorType:
    return parse_type(t) if isinstance(t, str) else t


class GraphBuilder:
    def __init__(self, name: str, meta: Mapping[str, Any] | None = None):
        self.graph = Graph(name=name, meta=dict(meta or {}))

    def input(self, name: str, type: TensorType | str) -> Value:
        if name in self.graph.inputs:
            raise IRError(f"graph input {name!r} declared twice")
        v = self.graph.inputs[name] = Value(as_type(type), hint=name)
        return v

    def param(self, name: str, type: TensorType | str) -> Value:
        if name in self.graph.params:
            raise IRError(f"param @{name} declared twice")
        v = self.graph.params[name] = Value(as_type(type), param=name)
        return v

    def op(self, op: str, *inputs: Value | None, hint: str | None = None, **attrs: Any) -> Any:
        """Append `op(inputs) {attrs}`; returns its one result, or a tuple of results."""
        opdef = get_op(op)
        while (
            inputs and inputs[-1] is None
        ):  # absent trailing optionals: `linear(%x, @w)`, not `(%x, @w, _)`
            inputs = inputs[:-1]
        try:
            checked = opdef.check_attrs(attrs)
            types = infer_node(opdef, inputs, checked)
        except IRError as e:
            raise IRError(
                e.message, expected=e.expected, got=e.got, where=f"{op}({hint or ''})"
            ) from None
        outs = tuple(
            Value(t, hint=hint if len(types) == 1 or not hint else f"{hint}_{name}")
            for t, name in zip(types, _result_names(opdef.outputs, len(types)))
        )
        self.graph.nodes.append(Node(op, tuple(inputs), outs, checked))
        return outs[0] if len(outs) == 1 and not opdef.outputs[0].startswith("*") else outs

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        get_op(name)  # unknown ops fail here, with the registry's message
        return lambda *inputs, **kw: self.op(name, *inputs, **kw)

    def output(self, name: str, value: Value) -> None:
        if name in self.graph.outputs:
            raise IRError(f"graph output {name!r} declared twice")
        self.graph.outputs[name] = value

    def build(self, weights: Any = None) -> Graph:
        from irgraph.weights import WeightStore

        if weights is not None and not isinstance(weights, WeightStore):
            weights = WeightStore.from_arrays(weights)
        self.graph.weights = weights
        self.graph.verify()
        return self.graph


def _result_names(names: tuple[str, ...], n: int) -> list[str]:
    if names and names[0].startswith("*"):
        return [str(i) for i in range(n)]
    return list(names)
