"""`verify(graph)`: cheap structural and type checks, run after every pass.

An error names the node and op, shows the lines around it in the text form and
says expected vs. got (STYLE.md lesson 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from irgraph.errors import IRError
from irgraph.ir import Graph, Node, Value
from irgraph.registry import OpDef, get_op
from irgraph.sparsity import records
from irgraph.types import TensorType


def infer_node(
    opdef: OpDef, inputs: Sequence[Value | None], attrs: Mapping[str, Any]
) -> list[TensorType]:
    """Output types of `opdef` applied to `inputs` (attrs already checked)."""
    opdef.check_arity(len(inputs))
    for name, v in zip(opdef.inputs, inputs):
        if v is None and not name.endswith("?"):
            raise IRError(f"{opdef.name} input {name!r} is required")
    return list(opdef.infer(*opdef.pad(v.type if v is not None else None for v in inputs), **attrs))


def verify(graph: Graph) -> None:
    """Raise IRError if the graph is not well formed and well typed."""
    defined: set[Value] = set(graph.inputs.values()) | set(graph.params.values())
    for name, v in graph.params.items():
        if v.param != name:
            raise IRError(
                f"param @{name} is registered under another name", expected=name, got=v.param
            )
    for node in graph.nodes:
        _verify_node(graph, node, defined)
    for name, v in graph.outputs.items():
        if v not in defined:
            raise IRError(f"output {name!r} is not produced by any node or input")
    for name, v in graph.inputs.items():
        if v.type.quant is not None:
            raise IRError(f"input %{name} has a quantized type; only params are quantized")
    records(graph)  # the sparsity record names params of this graph, in its documented form
    if graph.weights is not None:
        missing = [p for p in graph.stored_names() if p not in graph.weights]
        if missing:
            raise IRError(f"weights missing for {len(missing)} params: {', '.join(missing[:5])}")


def _verify_node(graph: Graph, node: Node, defined: set[Value]) -> None:
    def fail(message: str, expected: Any = None, got: Any = None) -> NoReturn:
        raise IRError(
            f"{message}\n{context(graph, node)}",
            expected=expected,
            got=got,
            where=f"node {node.op} #{graph.nodes.index(node)}",
        )

    try:
        opdef = get_op(node.op)
    except IRError as e:
        fail(e.message)
    for v in node.inputs:  # an undeclared param is never defined: say which it is first
        if v is not None and v.param is not None and graph.params.get(v.param) is not v:
            fail(f"param @{v.param} is not declared in graph.params")
        if v is not None and v not in defined:
            fail(f"input {v!r} is used before it is defined (or not in the graph)")
    reads_stored = {opdef.slot(name) for name in opdef.stored_dtype}
    for i, v in enumerate(node.inputs):
        if v is not None and v.type.quant is not None and i not in reads_stored:
            fail(
                f"{node.op} input #{i} is the quantized weight {v!r}; only an op that reads "
                "weights in their stored dtype takes one",
                expected=", ".join(opdef.stored_dtype) or "no quantized inputs",
            )
    try:
        attrs = opdef.check_attrs(node.attrs)
        types = infer_node(opdef, node.inputs, attrs)
    except IRError as e:
        fail(e.message, e.expected, e.got)
    if len(types) != len(node.outputs):
        fail(f"{node.op} has the wrong number of results", len(types), len(node.outputs))
    for i, (t, v) in enumerate(zip(types, node.outputs)):
        if t != v.type:
            fail(f"result {i} of {node.op} has the wrong type", t, v.type)
        if v.type.quant is not None:
            fail(f"result {i} of {node.op} is quantized; only params are")
        if v in defined:
            fail(f"result {i} of {node.op} is defined twice (SSA)")
        defined.add(v)


def context(graph: Graph, node: Node, around: int = 2) -> str:
    """The text-form lines around `node`, the node's own line marked with `>`."""
    from irgraph.printer import print_lines

    try:
        lines, where = print_lines(graph)
    except Exception:  # a graph too broken to print still gets its error
        return f"  (node {node.op})"
    at = where.get(node, 0)
    lo, hi = max(0, at - around), min(len(lines), at + around + 1)
    return "\n".join(("> " if i == at else "  ") + lines[i] for i in range(lo, hi))
