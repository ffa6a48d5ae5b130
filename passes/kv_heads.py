"""What gqa-to-mha and mha-to-gqa share: changing the number of KV heads of cached attention.

A site is one `attention` node with a KV cache whose keys and values each come
from their own projection: `linear(x, @W) -> reshape [.., kv, head_dim] -> (rotary,
per-head norm, ...) -> attention`, with `past_key_values.{i}.{key,value}` graph inputs
and `present.{i}.*` graph outputs. Changing the head count rewrites W's rows (and the
bias), the reshape's head count, the types along the chain, the cache inputs and
outputs; the attention's own output keeps its type, so nothing after it changes.

W's rows are [kv_heads, head_dim] blocks; `heads_transform` maps those blocks
([kv, head_dim, ...]) to the new count. Sites that do not fit the pattern are
reported with the reason, like a rewrite rule that did not fire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from irgraph.errors import IrgraphError, PassError
from irgraph.ir import Graph, Node, Value
from irgraph.kvcache import contract_of
from irgraph.lm import PAST_PREFIX, PRESENT_PREFIX
from irgraph.passes.graphs import GraphIndex, rebuild
from irgraph.passes.projections import is_norm, linear_problem, transparent
from irgraph.registry import get_op
from irgraph.verifier import infer_node

# [kv, head_dim, ...] blocks of a projection's rows -> [new_kv, head_dim, ...]
HeadsTransform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Chain:
    """The nodes from a K or V projection to the attention: linear, reshape, then per-head ops."""

    linear: Node
    reshape: Node
    after: tuple[Node, ...]  # per-head ops between the reshape and the attention, in order
    head_dim: int


@dataclass(frozen=True)
class Site:
    attention: Node
    key: Chain
    value: Chain
    past: tuple[str, str]  # the cache input names, key then value
    present: tuple[str, str]
    heads: int
    kv_heads: int

    @property
    def layer(self) -> str:
        return self.past[0][len(PAST_PREFIX) :].rsplit(".", 1)[0]


NO_SITES = "no cached multi-head attention (latent attention and encoders keep their heads)"


def find_sites(graph: Graph) -> tuple[list[Site], list[str]]:
    """The cached attention sites whose KV head count can change, and why the others cannot."""
    index = GraphIndex(graph)
    input_names = {v: n for n, v in graph.inputs.items()}
    output_names = {v: n for n, v in graph.outputs.items()}
    sites, reasons = [], []
    for node in graph.nodes:
        if node.op != "attention" or node.inputs[3] is None:
            continue  # encoders and cross-attention keep no cache
        where = index.describe(node)
        try:
            site = _site(graph, index, node, input_names, output_names)
        except _NoSite as e:
            reasons.append(f"{where}: {e}")
            continue
        sites.append(site)
    return sites, reasons


class _NoSite(Exception):
    """Why an attention node is not a site (the pass reports it)."""


def _site(
    graph: Graph,
    index: GraphIndex,
    node: Node,
    input_names: dict[Value, str],
    output_names: dict[Value, str],
) -> Site:
    past = []
    for v in node.inputs[3:5]:
        if v not in input_names:
            raise _NoSite("its cache is computed, not a graph input (run this before kv-layout)")
        past.append(input_names[v])
    present = []
    for v in node.outputs[1:3]:
        if index.users_of(v) or v not in output_names:
            raise _NoSite("its present cache is read by other nodes or not a graph output")
        present.append(output_names[v])
    if not all(n.startswith(PRESENT_PREFIX) for n in present):
        raise _NoSite(f"its present caches are named {present}, not present.*")
    q, k = node.arg(0).type, node.arg(1).type
    heads, kv_heads = q.shape[2], k.shape[2]
    if not isinstance(heads, int) or not isinstance(kv_heads, int):
        raise _NoSite("its head counts are not numbers")
    key, value = (_chain(index, node.arg(slot), kv_heads) for slot in (1, 2))
    return Site(node, key, value, (past[0], past[1]), (present[0], present[1]), heads, kv_heads)


def _chain(index: GraphIndex, v: Value, kv_heads: int) -> Chain:
    after: list[Node] = []
    while True:
        node = index.producer.get(v)
        if node is None:
            raise _NoSite("its keys or values come from a graph input, not a projection")
        if not index.single_use(v):
            raise _NoSite(f"{index.describe(node)} on the way to it has other readers")
        if node.op == "reshape":
            break
        if not (transparent(node) or is_norm(node)):
            raise _NoSite(f"{index.describe(node)} on the way to it is not a per-head op")
        if node.arg(0).type.shape[2:3] != (kv_heads,):
            raise _NoSite(f"{index.describe(node)} on the way to it is not [batch, seq, kv, dim]")
        after.insert(0, node)
        v = node.arg(0)
    shape = node.attrs["shape"]
    if len(shape) != 4 or shape[2] != kv_heads or node.outputs[0].type.shape[2] != kv_heads:
        raise _NoSite(f"{index.describe(node)} does not split out the KV heads as axis 2")
    head_dim = node.outputs[0].type.shape[3]
    if not isinstance(head_dim, int):
        raise _NoSite(f"{index.describe(node)} has a symbolic head_dim")
    linear = index.producer.get(node.arg(0))
    if linear is None or linear.op != "linear" or not index.single_use(node.arg(0)):
        got = "a graph input" if linear is None else f"a {linear.op}"
        raise _NoSite(f"its keys or values come from {got}, not their own linear (fuse-qkv?)")
    problem = linear_problem(index, linear)
    if problem:
        raise _NoSite(problem)
    return Chain(linear, node, tuple(after), head_dim)


def set_kv_heads(
    graph: Graph, sites: list[Site], plan: Callable[[Site], tuple[int, HeadsTransform]]
) -> Graph:
    """`graph` with each site's KV heads changed as `plan(site)` says: (new count, transform)."""
    if contract_of(graph.meta).layout != "bnsh":
        raise PassError("changing KV heads needs the BNSH cache layout; run kv-layout after it")
    inputs = dict(graph.inputs)
    params: dict[str, Value] = {}
    weights: dict[str, np.ndarray] = {}
    replaced: dict[Node, Node] = {}
    outputs = dict(graph.outputs)
    for site in sites:
        new_kv, transform = plan(site)
        chain_out = []
        for chain, past in ((site.key, site.past[0]), (site.value, site.past[1])):
            chain_out.append(
                _rewrite_chain(graph, chain, new_kv, transform, params, weights, replaced)
            )
            old = graph.inputs[past]
            b, _, s, d = old.type.shape
            inputs[past] = Value(old.type.with_shape((b, new_kv, s, d)), hint=old.hint)
        node = site.attention
        new_inputs = list(node.inputs)
        new_inputs[1], new_inputs[2] = chain_out
        new_inputs[3], new_inputs[4] = inputs[site.past[0]], inputs[site.past[1]]
        attention = _retyped(node, new_inputs, dict(node.attrs), keep_first=True)
        replaced[node] = attention
        for name, v in zip(site.present, attention.outputs[1:3]):
            outputs[name] = v
    subst: dict[Value, Value] = {}
    for old_node, new_node in replaced.items():
        subst.update(zip(old_node.outputs, new_node.outputs))
    nodes = []
    for node in graph.nodes:
        node = replaced.get(node, node)
        ins = tuple(subst.get(v, v) if v is not None else None for v in node.inputs)
        nodes.append(node if ins == node.inputs else Node(node.op, ins, node.outputs, node.attrs))
    staged = Graph(graph.name, inputs, graph.params, graph.nodes, graph.outputs, dict(graph.meta))
    staged.weights = graph.weights
    return rebuild(staged, nodes, outputs=outputs, new_params=params, new_weights=weights)


def _rewrite_chain(
    graph: Graph,
    chain: Chain,
    new_kv: int,
    transform: HeadsTransform,
    params: dict[str, Value],
    weights: dict[str, np.ndarray],
    replaced: dict[Node, Node],
) -> Value:
    """Rewrite one K or V chain; returns the value the attention now reads."""
    lin = chain.linear
    shape = chain.reshape.attrs["shape"]
    head_dim = chain.head_dim
    new_inputs: list[Value | None] = list(lin.inputs)
    for slot in (1, 2):
        v = lin.inputs[slot] if slot < len(lin.inputs) else None
        if v is None or v.param is None:
            continue
        rows = new_kv * head_dim
        new_type = v.type.with_shape((rows, *v.type.shape[1:]))
        new_inputs[slot] = params[v.param] = Value(new_type, hint=v.hint, param=v.param)
        if graph.weights is not None:
            array = np.asarray(graph.weight(v.param))
            blocks = array.reshape(-1, head_dim, *array.shape[1:])  # (kv, head_dim, in)
            weights[v.param] = transform(blocks).reshape(rows, *array.shape[1:]).astype(array.dtype)
    node = replaced[lin] = _retyped(lin, new_inputs, dict(lin.attrs))
    attrs = {**chain.reshape.attrs, "shape": (*shape[:2], new_kv, *shape[3:])}
    node = replaced[chain.reshape] = _retyped(chain.reshape, [node.outputs[0]], attrs)
    for old in chain.after:
        ins = [node.outputs[0], *old.inputs[1:]]
        node = replaced[old] = _retyped(old, ins, dict(old.attrs))
    return node.outputs[0]


def _retyped(
    node: Node, inputs: list[Value | None], attrs: dict[str, Any], *, keep_first: bool = False
) -> Node:
    """`node` on new inputs with its output types inferred again (new Values where they change).

    keep_first: output 0 keeps its Value (the attention's result, whose type must not change).
    """
    opdef = get_op(node.op)
    try:
        types = infer_node(opdef, inputs, opdef.check_attrs(attrs))
    except IrgraphError as e:
        raise PassError(f"cannot retype {node.op} for the new KV heads: {e}") from None
    outs = []
    for i, (old, t) in enumerate(zip(node.outputs, types)):
        if i == 0 and keep_first:
            if t != old.type:
                raise PassError(
                    f"{node.op}'s result changed type", expected=str(old.type), got=str(t)
                )
            outs.append(old)
        else:
            outs.append(Value(t, hint=old.hint))
    return Node(node.op, tuple(inputs), tuple(outs), attrs)


def repeat_heads(group: int) -> HeadsTransform:
    """Each KV head repeated for the `group` query heads it serves (exact: attention does too)."""
    return lambda blocks: np.repeat(blocks, group, axis=0)


def mean_pool_heads(heads: int, kv: int, new_kv: int) -> HeadsTransform:
    """Expand to one head per query, then average each group of heads/new_kv (Ainslie et al.)."""

    def pool(blocks: np.ndarray) -> np.ndarray:
        full = np.repeat(blocks, heads // kv, axis=0)  # (heads, head_dim, in)
        return full.reshape(new_kv, heads // new_kv, *full.shape[1:]).mean(axis=1)

    return pool
