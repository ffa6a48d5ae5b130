"""Parse the canonical text form back into a Graph (`parse(str(g))` prints identically).

Errors are `IRError`s naming the line and column and what was expected.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from irgraph.dtypes import DType
from irgraph.errors import IRError
from irgraph.ir import Graph, Node, Value
from irgraph.quant import QuantSpec
from irgraph.registry import get_op
from irgraph.types import Dim, TensorType, add_dims
from irgraph.verifier import infer_node

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<val>%[A-Za-z0-9_.\-]+)
  | (?P<par>@[A-Za-z0-9_.\-/]+)
  | (?P<num>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)(?![A-Za-z_]))
  | (?P<neg>-inf)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<p>[\[\](){}<>:,=+*])
    )""",
    re.VERBOSE,
)


class _Line:
    """Tokens of one line with a cursor; errors carry the line number."""

    def __init__(self, text: str, lineno: int):
        self.text, self.lineno, self.tokens, self.i = text, lineno, [], 0
        pos, end = 0, len(text.rstrip())  # linear in the line's length, however long
        while pos < end:
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                self.fail(f"unexpected character {text[pos:].strip()[:1]!r}", col=pos)
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()

    def fail(self, message: str, col: int | None = None, expected: Any = None) -> NoReturn:
        if col is None:
            col = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        got = self.tokens[self.i][1] if self.i < len(self.tokens) else "end of line"
        raise IRError(
            message,
            expected=expected,
            got=repr(got) if expected else None,
            where=f"line {self.lineno}, col {col + 1}: {_shown(self.text)}",
        )

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i][:2] if self.i < len(self.tokens) else ("end", "")

    def take(self, kind: str, text: str | None = None) -> str:
        k, t = self.peek()
        if k != kind or (text is not None and t != text):
            self.fail("syntax error", expected=repr(text) if text else kind)
        self.i += 1
        return t

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text and self.peek()[0] in ("p", "id"):
            self.i += 1
            return True
        return False

    def done(self) -> None:
        if self.i != len(self.tokens):
            self.fail("unexpected text at end of line", expected="end of line")

    # -- grammar pieces ----------------------------------------------------------------------

    def string(self) -> str:
        """A quoted string token, its escapes decoded as JSON's."""
        col = self.tokens[self.i][2] if self.i < len(self.tokens) else None
        text = self.take("str")
        try:
            value: str = json.loads(text)
        except json.JSONDecodeError as e:
            self.fail(f"bad string escape: {e.msg}", col=col)
        return value

    def dim(self) -> Dim:
        total: Dim = 0
        while True:
            kind, text = self.peek()
            if kind == "num" and text.lstrip("-").isdigit():
                self.i += 1
                n = int(text)
                if self.accept("*"):
                    total = add_dims(total, _sym(self.take("id"), n))
                else:
                    total = add_dims(total, n)
            elif kind == "id":
                total = add_dims(total, _sym(self.take("id"), 1))
            else:
                self.fail("bad dim", expected="an int or a symbol")
            if not self.accept("+"):
                if isinstance(total, int) and total < 0:
                    self.i -= 1
                    self.fail("negative dim", expected="a size >= 0")
                return total

    def type(self) -> TensorType:
        dtype_text = self.take("id")
        try:
            dtype = DType.parse(dtype_text)
        except IRError as e:
            self.i -= 1
            self.fail(e.message, expected=e.expected)
        quant = None
        if self.accept("<"):  # a quantized weight: i4<g32,sym,f16>[...]
            start = self.i
            items = [self.take("id")]
            while self.accept(","):
                items.append(self.take("id"))
            self.take("p", ">")
            try:
                quant = QuantSpec.parse(dtype, items)
            except IRError as e:
                self.i = start
                self.fail(e.message, expected=e.expected)
        self.take("p", "[")
        dims: list[Dim] = []
        if not self.accept("]"):
            dims.append(self.dim())
            while self.accept(","):
                dims.append(self.dim())
            self.take("p", "]")
        return TensorType(dtype, tuple(dims), quant)

    def attr_value(self, depth: int = 0) -> Any:
        kind, text = self.peek()
        if self.accept("["):
            if depth >= _MAX_NESTING:  # deeper lists would exhaust Python's recursion limit
                self.i -= 1
                self.fail("attribute lists nested too deeply", expected=f"<= {_MAX_NESTING} levels")
            items: list[Any] = []
            if not self.accept("]"):
                items.append(self.attr_value(depth + 1))
                while self.accept(","):
                    items.append(self.attr_value(depth + 1))
                self.take("p", "]")
            return items
        if kind == "str":
            return self.string()
        self.i += 1
        if kind == "num":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "neg":
            return float("-inf")
        if kind == "id" and text in _WORDS:
            return _WORDS[text]
        self.i -= 1
        self.fail("bad attribute value", expected="a number, string, true/false/none or [list]")


_MAX_NESTING = 32
_SHOWN = 120  # characters of the offending line an error quotes


def _shown(line: str) -> str:
    text = line.strip()
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


_WORDS = {"true": True, "false": False, "none": None, "inf": float("inf"), "nan": float("nan")}


def _sym(name: str, coef: int) -> Dim:
    from irgraph.types import Sym

    return Sym(((name, coef),))


def parse(text: str) -> Graph:
    """Read a graph from its text form; raises IRError naming the line on any problem."""
    lines = text.splitlines()
    body = [
        (n + 1, line)
        for n, line in enumerate(lines)
        if line.strip() and not line.strip().startswith("#")
    ]
    if not body:
        raise IRError("empty graph text", expected='graph "NAME" {')
    lineno, first = body[0]
    head = _Line(first, lineno)
    head.take("id", "graph")
    graph = Graph(name=head.string())
    head.take("p", "{")
    head.done()
    scope: dict[str, Value] = {}
    closed = False
    for lineno, raw in body[1:]:
        if closed:
            _Line(raw, lineno).fail("text after the closing brace")
        if raw.split(None, 1)[0] == "output":  # output names may hold dots: present.0.key
            _output(raw, lineno, scope, graph)
            continue
        line = _Line(raw, lineno)
        kind, word = line.peek()
        if kind == "p" and word == "}":
            line.take("p", "}")
            line.done()
            closed = True
        elif kind == "id" and word == "meta":
            line.i += 1
            key = line.take("id")
            line.take("p", "=")
            graph.meta[key] = line.attr_value()
            line.done()
        elif kind == "id" and word == "input":
            line.i += 1
            name = line.take("val")[1:]
            line.take("p", ":")
            if name in scope:
                line.fail(f"input %{name} defined twice")
            scope[name] = graph.inputs[name] = Value(line.type(), hint=name)
            line.done()
        elif kind == "id" and word == "param":
            line.i += 1
            name = line.take("par")[1:]
            line.take("p", ":")
            if name in graph.params:
                line.fail(f"param @{name} declared twice")
            graph.params[name] = Value(line.type(), param=name)
            line.done()
        elif kind == "val":
            graph.nodes.append(_node(line, scope, graph))
        else:
            line.fail("syntax error", expected="meta, input, param, output, a node or }")
    if not closed:
        last, text = body[-1]
        raise IRError(
            "graph text ends without its closing brace",
            expected="}",
            where=f"line {last}: {_shown(text)}",
        )
    return graph


def _output(raw: str, lineno: int, scope: dict[str, Value], graph: Graph) -> None:
    m = re.fullmatch(r"\s*output\s+([A-Za-z0-9_.\-]+)\s*=\s*(.*)", raw)
    if not m:
        _Line("", lineno).fail(f"bad output line: {raw.strip()}", expected="output NAME = %value")
    if m.group(1) in graph.outputs:
        _Line(raw, lineno).fail(f"output {m.group(1)} declared twice")
    operand = _Line(m.group(2), lineno)
    value = _operand(operand, scope, graph)
    operand.done()
    if value is None:
        operand.fail("an output must be a value")
    graph.outputs[m.group(1)] = value


def _operand(line: _Line, scope: dict[str, Value], graph: Graph) -> Value | None:
    kind, text = line.peek()
    if kind == "val":
        line.i += 1
        if text[1:] not in scope:
            line.i -= 1
            line.fail(f"value {text} used before it is defined")
        return scope[text[1:]]
    if kind == "par":
        line.i += 1
        if text[1:] not in graph.params:
            line.i -= 1
            line.fail(f"param {text} is not declared")
        return graph.params[text[1:]]
    if kind == "id" and text == "_":
        line.i += 1
        return None
    line.fail("bad operand", expected="%value, @param or _")


def _node(line: _Line, scope: dict[str, Value], graph: Graph) -> Node:
    outs: list[tuple[str, TensorType]] = []
    while True:
        name = line.take("val")[1:]
        line.take("p", ":")
        outs.append((name, line.type()))
        if not line.accept(","):
            break
    line.take("p", "=")
    op_col = line.tokens[line.i][2] if line.i < len(line.tokens) else 0
    op = line.take("id")
    try:
        opdef = get_op(op)
    except IRError as e:
        line.fail(e.message, col=op_col)
    line.take("p", "(")
    inputs: list[Value | None] = []
    if not line.accept(")"):
        inputs.append(_operand(line, scope, graph))
        while line.accept(","):
            inputs.append(_operand(line, scope, graph))
        line.take("p", ")")
    attrs: dict[str, Any] = {}
    if line.accept("{"):
        while True:
            key = line.take("id")
            line.take("p", "=")
            attrs[key] = line.attr_value()
            if not line.accept(","):
                break
        line.take("p", "}")
    line.done()
    try:
        checked = opdef.check_attrs(attrs)
        types = infer_node(opdef, inputs, checked)
    except IRError as e:
        raise IRError(
            e.message,
            expected=e.expected,
            got=e.got,
            where=f"line {line.lineno}: {_shown(line.text)}",
        ) from None
    if len(types) != len(outs) or any(t != ty for t, (_, ty) in zip(types, outs)):
        raise IRError(
            f"declared result types of {op} differ from the inferred ones",
            expected=", ".join(map(str, types)),
            got=", ".join(str(t) for _, t in outs),
            where=f"line {line.lineno}: {_shown(line.text)}",
        )
    values = []
    for name, ty in outs:
        if name in scope:
            line.fail(f"value %{name} defined twice (SSA)")
        v = Value(ty, hint=None if name.isdigit() else name)
        scope[name] = v
        values.append(v)
    return Node(op, tuple(inputs), tuple(values), checked)
