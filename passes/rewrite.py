"""Declarative rewrites: pattern, check, rewrite (STYLE.md lesson 7).

A rule finds candidates (its pattern), `check`s each one and says in words why
it does not fire, and `rewrite`s the ones that pass through a `Rewriter`, which
collects the edits of one sweep and builds the new graph at the end:

    reshape_noop = TreeRule(
        "reshape-noop", op("reshape", var("x"), bind="node"),
        check=lambda m: (
            None if m.node.outputs[0].type == m.x.type else "the reshape changes the shape"
        ),
        rewrite=lambda rw, m: m.x,
    )

Tree patterns (`op`/`var`) cover rules rooted at one node; rules over a group of
nodes (the linears reading one normalised input) subclass `Rule` directly.
`explain(rule, graph)` lists every candidate with the reason it did or did not fire,
which is what `irgraph explain RULE PATH` prints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from irgraph.errors import IrgraphError, PassError
from irgraph.ir import Graph, Node, Value
from irgraph.passes.graphs import GraphIndex, fresh_param_name, rebuild
from irgraph.registry import get_op
from irgraph.types import TensorType
from irgraph.verifier import infer_node


@dataclass(frozen=True)
class Candidate:
    """A place a rule's pattern matched: the nodes it would consume and its bindings."""

    where: str
    nodes: tuple[Node, ...]
    binds: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.binds[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class Miss:
    """A place a rule looked at whose pattern did not match, and why."""

    where: str
    reason: str


@dataclass(frozen=True)
class Explanation:
    rule: str
    where: str
    fired: bool
    reason: str  # why not (empty when it fired)

    def __str__(self) -> str:
        return f"{self.rule} @ {self.where}: " + ("fires" if self.fired else f"no: {self.reason}")


class Rule(ABC):
    """A rewrite rule: `candidates` (the pattern), `check` (why not) and `rewrite`."""

    name: str  # a class attribute, or per instance for table-declared rules (TreeRule)
    summary: str = ""

    @abstractmethod
    def candidates(self, index: GraphIndex) -> Iterator[Candidate | Miss]:
        """Every place the rule considered: a Candidate where the pattern matched, else a Miss."""

    def check(self, index: GraphIndex, cand: Candidate) -> str | None:
        """None if the rule may fire on `cand`, else the reason it may not."""
        return None

    @abstractmethod
    def rewrite(self, rw: Rewriter, cand: Candidate) -> None:
        """Emit the replacement through `rw` (new nodes, params, value replacements)."""


class Rewriter:
    """Collects one sweep's edits to a graph; `finish()` builds the new graph.

    New nodes go right before the anchor node (`at`), replacements apply to every
    use; nodes left without users disappear, the order is re-sorted stably.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.subst: dict[Value, Value] = {}
        self.inserted: dict[int, list[Node]] = {}
        self.new_params: dict[str, Value] = {}
        self.new_weights: dict[str, np.ndarray] = {}
        self.new_outputs: dict[str, Value] = {}
        self._anchor = 0
        self._position = {n: i for i, n in enumerate(graph.nodes)}

    @property
    def has_weights(self) -> bool:
        return self.graph.weights is not None

    def at(self, node: Node) -> Rewriter:
        """Insert the following nodes just before `node`."""
        self._anchor = self._position[node]
        return self

    def emit(self, op: str, *inputs: Value | None, hint: str | None = None, **attrs: Any) -> Any:
        """Append `op(inputs) {attrs}` at the anchor; returns its result (a tuple for several)."""
        opdef = get_op(op)
        try:
            checked = opdef.check_attrs(attrs)
            types = infer_node(opdef, inputs, checked)
        except IrgraphError as e:
            raise PassError(
                f"rewrite built an ill-typed {op}: {e.message}", expected=e.expected, got=e.got
            ) from None
        outs = tuple(Value(t, hint=hint) for t in types)
        self.inserted.setdefault(self._anchor, []).append(Node(op, tuple(inputs), outs, checked))
        return outs[0] if len(outs) == 1 and not opdef.outputs[0].startswith("*") else outs

    def param(
        self,
        wanted: str,
        type: TensorType,
        array: np.ndarray | Mapping[str, np.ndarray] | None = None,
    ) -> Value:
        """A new parameter named `wanted` (made unique); its array kept if the graph has weights
        (a quantized type: its stored arrays, suffix -> array, as `Graph.stored` gives them)."""
        name = fresh_param_name(self.graph, wanted, self.new_params)
        v = Value(type, param=name)
        self.new_params[name] = v
        if self.has_weights:
            if array is None:
                raise PassError(f"new param @{name} needs an array: the graph has weights")
            if isinstance(array, Mapping):
                for suffix, a in array.items():
                    self.new_weights[name + suffix] = np.ascontiguousarray(a)
            else:
                self.new_weights[name] = np.ascontiguousarray(array, dtype=type.dtype.numpy)
        return v

    def weight(self, v: Value) -> np.ndarray:
        if v.param is None:
            raise PassError(f"{v!r} is not a parameter")
        return np.asarray(self.graph.weight(v.param))

    def stored(self, v: Value) -> dict[str, np.ndarray]:
        """The stored arrays of parameter `v` (suffix -> array; a quantized weight's data, scales
        and zero points)."""
        if v.param is None:
            raise PassError(f"{v!r} is not a parameter")
        return {k: np.asarray(a) for k, a in self.graph.stored(v.param).items()}

    def replace(self, old: Value, new: Value) -> None:
        """Every use of `old` (including graph outputs) reads `new` instead."""
        if old.type != new.type:
            raise PassError(
                "a rewrite replaced a value by one of another type", expected=old.type, got=new.type
            )
        if old is not new:
            self.subst[old] = new

    def add_output(self, name: str, value: Value) -> None:
        """A new graph output `name` (after the existing ones)."""
        if name in self.graph.outputs or name in self.new_outputs:
            raise PassError(f"a rewrite added output {name!r} twice", where=f"output {name}")
        self.new_outputs[name] = value

    @property
    def changed(self) -> bool:
        return bool(self.subst or self.inserted or self.new_params or self.new_outputs)

    @overload
    def resolve(self, v: Value) -> Value: ...
    @overload
    def resolve(self, v: Value | None) -> Value | None: ...
    def resolve(self, v: Value | None) -> Value | None:
        while v is not None and v in self.subst:
            v = self.subst[v]
        return v

    def finish(self) -> Graph:
        nodes: list[Node] = []
        for i, node in enumerate(self.graph.nodes):
            nodes.extend(self.inserted.get(i, ()))
            nodes.append(node)
        nodes.extend(self.inserted.get(len(self.graph.nodes), ()))
        rewired = []
        for node in nodes:
            inputs = tuple(self.resolve(v) for v in node.inputs)
            same = all(a is b for a, b in zip(inputs, node.inputs))
            rewired.append(node if same else Node(node.op, inputs, node.outputs, node.attrs))
        outputs = {
            name: self.resolve(v) for name, v in {**self.graph.outputs, **self.new_outputs}.items()
        }
        return rebuild(
            self.graph,
            rewired,
            outputs=outputs,
            new_params=self.new_params,
            new_weights=self.new_weights,
        )


def apply_rules(graph: Graph, rules: Sequence[Rule], *, max_sweeps: int = 16) -> tuple[Graph, int]:
    """Fire `rules` until none fires (or `max_sweeps`); returns the graph and how many fired.

    Within a sweep a node is consumed by at most one rewrite, so rewrites never
    conflict; the next sweep sees their results.
    """
    fired = 0
    for _ in range(max_sweeps):
        index = GraphIndex(graph)
        rw = Rewriter(graph)
        claimed: set[Node] = set()
        sweep = 0
        for rule in rules:
            for cand in rule.candidates(index):
                if isinstance(cand, Miss) or claimed.intersection(cand.nodes):
                    continue
                if rule.check(index, cand) is not None:
                    continue
                rule.rewrite(rw.at(max(cand.nodes, key=index.position.__getitem__)), cand)
                claimed.update(cand.nodes)
                sweep += 1
        if not sweep:
            break
        fired += sweep
        graph = rw.finish()
    return graph, fired


def explain(rule: Rule, graph: Graph) -> list[Explanation]:
    """For every candidate place of `rule` in `graph`: does it fire, and if not, why not."""
    index = GraphIndex(graph)
    result = []
    for cand in rule.candidates(index):
        if isinstance(cand, Miss):
            result.append(Explanation(rule.name, cand.where, False, cand.reason))
        else:
            reason = rule.check(index, cand)
            result.append(Explanation(rule.name, cand.where, reason is None, reason or ""))
    return result


# -- tree patterns -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Var:
    """Matches any value (or an absent optional input: None) and binds it to `name`."""

    name: str


@dataclass(frozen=True)
class Pat:
    """Matches a value produced by `op` whose inputs match `inputs`; binds the node to `bind`."""

    op: str
    inputs: tuple[Pat | Var, ...]
    bind: str | None = None


def var(name: str) -> Var:
    return Var(name)


def op(name: str, *inputs: Pat | Var, bind: str | None = None) -> Pat:
    return Pat(name, tuple(inputs), bind)


def match(
    pattern: Pat | Var,
    value: Value | None,
    index: GraphIndex,
    binds: dict[str, Any],
    nodes: list[Node],
) -> str | None:
    """Bind `pattern` against `value`; None on success, else why it does not match."""
    if isinstance(pattern, Var):
        if pattern.name in binds and binds[pattern.name] is not value:
            return f"%{pattern.name} would bind two different values"
        binds[pattern.name] = value
        return None
    node = index.producer.get(value) if value is not None else None
    if node is None:
        what = "absent" if value is None else ("a parameter" if value.param else "a graph input")
        return f"expected the result of {pattern.op}, found {what}"
    return match_node(pattern, node, index, binds, nodes)


def match_node(
    pattern: Pat, node: Node, index: GraphIndex, binds: dict[str, Any], nodes: list[Node]
) -> str | None:
    if node.op != pattern.op:
        return f"expected {pattern.op}, found {node.op}"
    if len(node.inputs) < len(pattern.inputs):
        return f"{node.op} has {len(node.inputs)} inputs, the pattern wants {len(pattern.inputs)}"
    if pattern.bind:
        binds[pattern.bind] = node
    nodes.append(node)
    for i, (sub, v) in enumerate(zip(pattern.inputs, node.inputs)):
        reason = match(sub, v, index, binds, nodes)
        if reason is not None:
            return f"input {i} of {node.op}: {reason}"
    return None


class TreeRule(Rule):
    """A rule rooted at one node: pattern tree, check(match) -> reason | None, rewrite -> value."""

    def __init__(
        self,
        name: str,
        pattern: Pat,
        *,
        check: Callable[[Candidate], str | None] | None = None,
        rewrite: Callable[[Rewriter, Candidate], Value],
        summary: str = "",
    ):
        self.name = name
        self.summary = summary
        self.pattern = pattern
        self._check = check
        self._rewrite = rewrite

    def candidates(self, index: GraphIndex) -> Iterator[Candidate | Miss]:
        for node in index.graph.nodes:
            if node.op != self.pattern.op:
                continue
            binds: dict[str, Any] = {"root": node}
            nodes: list[Node] = []
            reason = match_node(self.pattern, node, index, binds, nodes)
            where = index.describe(node)
            yield Miss(where, reason) if reason else Candidate(where, tuple(nodes), binds)

    def check(self, index: GraphIndex, cand: Candidate) -> str | None:
        return self._check(cand) if self._check else None

    def rewrite(self, rw: Rewriter, cand: Candidate) -> None:
        rw.replace(cand.root.outputs[0], self._rewrite(rw, cand))
