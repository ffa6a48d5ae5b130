"""The canonical text form: one node per line, with types (STYLE.md lesson 3).

    graph "llama-tiny" {
      meta vocab_size = 256
      input %input_ids: i64[batch, seq]
      param @embed.weight: f32[256, 64]
      %h: f32[batch, seq, 64] = embedding(%input_ids, @embed.weight)
      %q: f32[batch, seq, 4, 16], %k: ... = split(%qkv) {axis=2, sizes=[64, 32]}
      output logits = %logits
    }

Value names come from hints made unique here; graph inputs keep their names.
`irgraph.parser.parse` reads this text back and prints it identically.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from irgraph.ir import Graph, Node, Value

_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def format_attr(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    raise TypeError(f"attribute value {value!r} has no text form")


class Namer:
    """Gives every value a unique printed name, preferring its hint."""

    def __init__(self, graph: Graph):
        self.names: dict[Value, str] = {}
        self.used: set[str] = set()
        self.counter = 0
        for name, v in graph.inputs.items():
            self.names[v] = name
            self.used.add(name)
        for v in graph.params.values():
            self.names[v] = v.param or ""

    def __call__(self, v: Value | None) -> str:
        if v is None:
            return "_"
        if v.param is not None:
            return "@" + v.param
        if v not in self.names:
            self.names[v] = self._fresh(v.hint)
        return "%" + self.names[v]

    def _fresh(self, hint: str | None) -> str:
        if hint and _SAFE.match(hint) and not hint.isdigit() and hint not in self.used:
            name = hint
        elif hint and _SAFE.match(hint) and not hint.isdigit():
            n = 1
            while f"{hint}_{n}" in self.used:
                n += 1
            name = f"{hint}_{n}"
        else:
            while str(self.counter) in self.used:
                self.counter += 1
            name = str(self.counter)
        self.used.add(name)
        return name


def node_line(node: Node, name: Namer) -> str:
    outs = ", ".join(f"{name(v)}: {v.type}" for v in node.outputs)
    args = ", ".join(name(v) for v in node.inputs)
    from irgraph.registry import get_op

    shown = get_op(node.op).non_default(node.attrs)
    attrs = ", ".join(f"{k}={format_attr(v)}" for k, v in shown.items())
    return f"{outs} = {node.op}({args})" + (f" {{{attrs}}}" if attrs else "")


def print_lines(graph: Graph) -> tuple[list[str], dict[Node, int]]:
    """The text as lines, and the line index of each node (for error context)."""
    name = Namer(graph)
    lines = [f"graph {json.dumps(graph.name)} {{"]
    lines += [f"  meta {key} = {format_attr(value)}" for key, value in graph.meta.items()]
    lines += [f"  input %{key}: {v.type}" for key, v in graph.inputs.items()]
    lines += [f"  param @{key}: {v.type}" for key, v in graph.params.items()]
    where: dict[Node, int] = {}
    for node in graph.nodes:
        where[node] = len(lines)
        lines.append("  " + node_line(node, name))
    lines += [f"  output {key} = {name(v)}" for key, v in graph.outputs.items()]
    lines.append("}")
    return lines, where


def print_graph(graph: Graph) -> str:
    return "\n".join(print_lines(graph)[0]) + "\n"
