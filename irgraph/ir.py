"""SSA values, nodes and graphs.

A `Value` is produced once (by a node, or as a graph input or parameter) and
compared by identity: two values of the same type are still different values,
exactly like SSA names in a compiler. Names on values are hints for people;
the printer makes them unique (STYLE.md lessons 1-2). Graph inputs, outputs and
parameters do have significant names: they are the graph's interface.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from irgraph.errors import IRError
from irgraph.types import TensorType

if TYPE_CHECKING:
    from irgraph.weights import WeightStore


class Value:
    """One SSA value. Identity is the value: `==` is `is`, on purpose."""

    __slots__ = ("type", "hint", "param")

    def __init__(self, type: TensorType, hint: str | None = None, param: str | None = None):
        self.type = type
        self.hint = hint
        self.param = param  # the weight name when this value is a graph parameter

    def __repr__(self) -> str:
        name = f"@{self.param}" if self.param else f"%{self.hint or '?'}"
        return f"<Value {name}: {self.type}>"


@dataclass(frozen=True, eq=False)
class Node:
    """`outputs = op(inputs) {attrs}`; an absent optional input is None."""

    op: str
    inputs: tuple[Value | None, ...]
    outputs: tuple[Value, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    def arg(self, i: int) -> Value:
        """Input `i`, which must be present (a required input, or an optional one known given)."""
        v = self.inputs[i]
        if v is None:
            raise IRError(f"{self.op} input #{i} is absent", expected="a value")
        return v


@dataclass
class Graph:
    """A function over named inputs, parameters (weights) and outputs.

    `nodes` are in topological order. `meta` holds model facts that are not
    computation (vocab size, special token ids, model family). `weights` maps
    parameter names to arrays; it is None for structure-only graphs (a
    published-size model analysed without allocating its weights).
    """

    name: str
    inputs: dict[str, Value] = field(default_factory=dict)
    params: dict[str, Value] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    outputs: dict[str, Value] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    weights: WeightStore | None = None

    def __str__(self) -> str:
        from irgraph.printer import print_graph

        return print_graph(self)

    def verify(self) -> None:
        from irgraph.verifier import verify

        verify(self)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Save to folder `path` (see `irgraph.save`: a non-empty folder needs `overwrite`)."""
        from irgraph.serialize import save

        save(self, path, overwrite=overwrite)

    def producers(self) -> dict[Value, Node]:
        return {out: node for node in self.nodes for out in node.outputs}

    def users(self) -> dict[Value, list[Node]]:
        result: dict[Value, list[Node]] = {}
        for node in self.nodes:
            for v in node.inputs:
                if v is not None:
                    result.setdefault(v, []).append(node)
        return result

    def values(self) -> Iterator[Value]:
        yield from self.inputs.values()
        yield from self.params.values()
        for node in self.nodes:
            yield from node.outputs

    def weight(self, name: str) -> Any:
        """The array of parameter `name` (memory-mapped when loaded from disk).

        A quantized weight is dequantized to float32 by `irgraph.quant.dequantize`, the one
        definition of its numerics; `stored` gives the arrays it is kept as.
        """
        if self.weights is None:
            raise IRError(f"graph {self.name!r} has no weights (structure only)", where=f"@{name}")
        v = self.params.get(name)
        if v is not None and v.type.quant is not None:
            from irgraph.quant import dequantize

            shape = tuple(int(d) for d in v.type.shape)  # type: ignore[arg-type]  # params are static
            return dequantize(v.type.quant, shape, self.stored(name))
        return self.weights[name]

    def stored(self, name: str) -> dict[str, Any]:
        """Suffix ('' for the data, '.scales', '.zero_points') -> stored array of param `name`."""
        from irgraph.quant import stored_names

        if self.weights is None:
            raise IRError(f"graph {self.name!r} has no weights (structure only)", where=f"@{name}")
        v = self.params[name]
        missing = [n for n in stored_names(name, v.type.quant) if n not in self.weights]
        if missing:
            raise IRError(f"weights missing for @{name}: {', '.join(missing)}")
        return {n[len(name) :]: self.weights[n] for n in stored_names(name, v.type.quant)}

    def stored_names(self) -> list[str]:
        """Every weight-store entry the params use, in param order (what `save` writes)."""
        from irgraph.quant import stored_names

        return [n for name, v in self.params.items() for n in stored_names(name, v.type.quant)]
