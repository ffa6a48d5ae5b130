"""What the structured pruning passes share: finding the FFN channels and residual blocks of a
graph, and rebuilding it with smaller weights.

`ffn_groups` finds each feed-forward network from the graph (no names are read): a linear (the
down projection) whose input is computed channel by channel (activations, glu, mul) from the
outputs of other linears (up, gate) that nothing else reads; or a moe_experts node, whose
stacks hold every expert's up/gate rows and down columns. Removing channel c removes row c of
every up/gate weight (and bias) and column c of the down weight.

`shrunk` is the rewrite: params replaced by smaller arrays (and graph inputs by smaller types,
node attributes by new values), every node's types inferred again from its new inputs, so a
change flows through the graph as far as it reaches; the interface names stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from irgraph.errors import IrgraphError, PassError
from irgraph.ir import Graph, Node, Value
from irgraph.registry import Category, get_op
from irgraph.sparsity import META_KEY, records, with_records
from irgraph.types import TensorType
from irgraph.verifier import infer_node
from irgraph.weights import WeightStore

_CHANNELWISE = {"glu", "mul"}  # besides Category.ACTIVATION: each output channel reads its own


@dataclass(frozen=True)
class FfnGroup:
    """One FFN: its up/gate weights (rows = channels) and biases, and its down weight.

    `down_input` is the activation the down projection reads (its channels are the FFN's);
    for a moe_experts node `moe` is set and the weights are stacks [experts, ., .].
    """

    rows: tuple[str, ...]  # weights whose row c (last-but-one axis) is channel c
    biases: tuple[str, ...]  # vectors whose entry c is channel c
    down: str  # the weight whose column c (last axis) reads channel c
    down_input: Value
    moe: Node | None = None

    @property
    def params(self) -> tuple[str, ...]:
        return (*self.rows, *self.biases, self.down)


def ffn_groups(graph: Graph) -> list[FfnGroup]:
    """Every FFN of `graph` whose channels can be removed, in graph order."""
    users = graph.users()
    producer = graph.producers()
    outputs = set(graph.outputs.values())
    groups = []
    for node in graph.nodes:
        if node.op == "moe_experts":
            slots = get_op(node.op).inputs
            ups = [node.inputs[slots.index(s)] for s in ("w_up", "w_gate?")]
            down = node.inputs[slots.index("w_down")]
            rows = tuple(v.param for v in ups if v is not None and v.param is not None)
            if down is not None and down.param is not None:
                groups.append(FfnGroup(rows, (), down.param, node.arg(0), node))
            continue
        w = node.inputs[1] if node.op == "linear" else None
        if w is None or w.param is None:
            continue
        found = _channelwise_sources(node.arg(0), producer, users, outputs)
        if found is not None and found[0]:
            groups.append(FfnGroup(found[0], found[1], w.param, node.arg(0)))
    return groups


def _channelwise_sources(
    h: Value,
    producer: Mapping[Value, Node],
    users: Mapping[Value, list[Node]],
    outputs: set[Value],
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(up/gate weights, their biases) computing `h` channel by channel, or None if `h` is not
    such a value (or part of it is read elsewhere)."""
    rows: list[str] = []
    biases: list[str] = []
    stack = [h]
    while stack:
        v = stack.pop()
        node = producer.get(v)
        if node is None or v in outputs or len(users.get(v, [])) != 1:
            return None
        opdef = get_op(node.op)
        if node.op == "linear":
            w, b = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
            if w is None or w.param is None or (b is not None and b.param is None):
                return None
            rows.append(w.param)
            if b is not None and b.param is not None:
                biases.append(b.param)
        elif opdef.category is Category.ACTIVATION or node.op in _CHANNELWISE:
            ins = [x for x in node.inputs if x is not None]
            if any(x.type.shape != v.type.shape for x in ins):  # no broadcasting
                return None
            stack.extend(ins)
        else:
            return None
    return tuple(dict.fromkeys(rows)), tuple(dict.fromkeys(biases))


def narrowed(graph: Graph, group: FfnGroup, keep: np.ndarray) -> dict[str, np.ndarray]:
    """The group's weights with only the channels `keep` (indices; per expert for MoE:
    [experts, F'])."""
    out: dict[str, np.ndarray] = {}
    for name in group.rows:
        w = np.asarray(graph.weight(name))
        out[name] = _take(w, keep, axis=-2)
    for name in group.biases:
        out[name] = np.asarray(graph.weight(name))[keep]
    out[group.down] = _take(np.asarray(graph.weight(group.down)), keep, axis=-1)
    return out


def _take(w: np.ndarray, keep: np.ndarray, axis: int) -> np.ndarray:
    if keep.ndim == 1:
        return np.ascontiguousarray(np.take(w, keep, axis=axis))
    idx = np.expand_dims(keep, axis=-1 if axis == -2 else -2)  # [experts, F', 1] or [E, 1, F']
    return np.ascontiguousarray(np.take_along_axis(w, idx, axis=axis))


def shrunk(
    graph: Graph,
    arrays: Mapping[str, np.ndarray],
    *,
    inputs: Mapping[str, TensorType] | None = None,
    attrs: Mapping[Node, Mapping[str, Any]] | None = None,
) -> Graph:
    """`graph` with params `arrays` (new shapes), inputs of new types and nodes with new
    attributes; types are inferred again downstream. Sparsity records of changed params go."""
    subst: dict[Value, Value] = {}
    params = dict(graph.params)
    for name, a in arrays.items():
        old = graph.params[name]
        params[name] = subst[old] = Value(TensorType(old.type.dtype, tuple(a.shape)), param=name)
    new_inputs = dict(graph.inputs)
    for name, t in (inputs or {}).items():
        old = graph.inputs[name]
        new_inputs[name] = subst[old] = Value(t, hint=old.hint)
    nodes = []
    for node in graph.nodes:
        ins = tuple(subst.get(v, v) if v is not None else None for v in node.inputs)
        new_attrs = {**node.attrs, **(attrs or {}).get(node, {})}
        if all(a is b for a, b in zip(ins, node.inputs)) and new_attrs == dict(node.attrs):
            nodes.append(node)
            continue
        try:
            types = infer_node(get_op(node.op), ins, new_attrs)
        except IrgraphError as e:
            raise PassError(f"{node.op} does not accept the pruned shapes: {e.message}") from e
        outs = tuple(
            o if t == o.type else Value(t, hint=o.hint) for t, o in zip(types, node.outputs)
        )
        subst.update({o: n for o, n in zip(node.outputs, outs) if n is not o})
        nodes.append(Node(node.op, ins, outs, new_attrs))
    weights = None
    if graph.weights is not None:
        weights = WeightStore(
            {n: arrays[n] if n in arrays else graph.weights[n] for n in graph.stored_names()}
        )
    meta = dict(graph.meta)
    if META_KEY in meta:
        kept = {n: v for n, v in params.items() if n not in arrays or n not in records(graph)}
        meta = with_records(meta, {}, kept)
    return Graph(
        graph.name,
        new_inputs,
        params,
        nodes,
        {k: subst.get(v, v) for k, v in graph.outputs.items()},
        meta,
        weights,
    )
