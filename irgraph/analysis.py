"""Cost analysis from types alone: parameters, FLOPs, KV-cache and weight bytes.

Nothing here touches weights, so a published-size graph (hundreds of billions
of parameters, no weights allocated) is analysed in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from irgraph.errors import ConfigError
from irgraph.ir import Graph, Node, Value
from irgraph.kvcache import contract_of, is_scale
from irgraph.lm import PAST_PREFIX
from irgraph.registry import get_op


@dataclass(frozen=True)
class Cost:
    params: int  # total parameters
    active_params: int  # parameters used per token (MoE: only the routed top-k experts)
    weight_bytes: int  # at the stored dtypes
    prefill_flops_per_token: float  # forward FLOPs per token, prompt of `context` tokens
    decode_flops_per_token: float  # forward FLOPs for one new token after `context - 1` cached
    kv_bytes_per_token: int  # KV cache per token at `kv_bits` precision, all layers
    kv_stored_bytes_per_token: int  # the same as the graph stores it (its dtypes, scales included)
    kv_max_tokens: int | None  # a bounded (ring) cache's size in tokens; None: grows with context
    context: int


def _active_fraction(graph: Graph) -> dict[str, float]:
    """Param name -> fraction active per token, for routed weights (MoE experts: top-k/experts)."""
    frac: dict[str, float] = {}
    for node in graph.nodes:
        opdef = get_op(node.op)
        if not opdef.routed:
            continue
        types = opdef.pad([v.type if v is not None else None for v in node.inputs])
        fraction = opdef.active_fraction(types, **node.attrs)
        if fraction is None:
            continue
        for name in opdef.routed:
            slot = opdef.slot(name)
            v = node.inputs[slot] if slot < len(node.inputs) else None
            if v is not None and v.param:
                frac[v.param] = fraction
    return frac


def node_flops(node: Node, env: dict[str, int]) -> int:
    opdef = get_op(node.op)
    ins = opdef.pad([v.type if v is not None else None for v in node.inputs])
    return opdef.flops(ins, [v.type for v in node.outputs], env, **node.attrs)


def flops_env(graph: Graph, seq: int, past: int, batch: int = 1) -> dict[str, int]:
    """Sizes for the graph's symbols: batch, seq, past, and any other input symbol = seq.

    A paged cache (paged-kv) gets the blocks each row needs for past + seq tokens and a pool
    of that many pages per row."""
    env = {"batch": batch, "seq": seq, "past": past}
    contract = contract_of(graph.meta)
    if contract.storage == "paged":
        blocks = -(-(past + seq) // contract.block)
        env.update(blocks=blocks, pages=batch * blocks)
    env.update({s: seq for v in graph.inputs.values() for s in v.type.symbols if s not in env})
    return env


def graph_flops(graph: Graph, seq: int, past: int, batch: int = 1) -> int:
    env = flops_env(graph, seq, past, batch)
    return sum(node_flops(n, env) for n in graph.nodes)


def kv_bytes_per_token(graph: Graph, kv_bits: int | None = 16) -> int:
    """KV-cache bytes one token adds, over all layers (a cache input's size at past = 1).

    kv_bits: every cached value counted at that width (the zoo's 16-bit convention; a
    quantized cache's scale inputs left out); None: as the graph stores it, each cache
    input at its own dtype, scale inputs included.
    """
    contract = contract_of(graph.meta)
    total = 0
    for name, v in graph.inputs.items():
        if not name.startswith(PAST_PREFIX) or (kv_bits is not None and is_scale(name)):
            continue
        shape = list(v.type.shape)
        shape[contract.seq_axis(name)] = 1  # one token (a ring's axis holds its window)
        if contract.storage == "paged":
            shape[0] = 1  # [pages, block, ...]: one token of one page
        t = v.type.with_shape(tuple(shape))
        env = {s: 1 for s in t.symbols}
        total += t.nbytes(env) if kv_bits is None else t.numel(env) * kv_bits // 8
    return total


def kv_max_tokens(graph: Graph) -> int | None:
    """The most tokens the cache holds (a ring cache's window); None when it grows unbounded."""
    contract = contract_of(graph.meta)
    if contract.storage != "ring":
        return None
    caches = [(n, v.type) for n, v in graph.inputs.items() if n.startswith(PAST_PREFIX)]
    bounded = all(t.shape[contract.seq_axis(n)] == contract.window for n, t in caches)
    return contract.window if bounded else None  # GPT-3's dense layers keep growing


def max_context(graph: Graph, memory: int) -> int | None:
    """The longest context whose weights and KV cache (as stored) fit `memory` bytes at batch 1.

    (memory - weight bytes) // KV bytes per token; 0 when the weights alone do not fit; None
    when the cache puts no limit (no cache, or a bounded one that fits).
    """
    free = memory - sum(v.type.nbytes() for v in graph.params.values())
    if free < 0:
        return 0
    per_token = kv_bytes_per_token(graph, None)
    bounded = kv_max_tokens(graph)
    if per_token == 0 or (bounded is not None and bounded * per_token <= free):
        return None
    return free // per_token


def cost(graph: Graph, context: int = 4096, kv_bits: int = 16) -> Cost:
    if context < 1:
        raise ConfigError("context length must be at least 1", got=context, where="cost")
    frac = _active_fraction(graph)
    params = sum(v.type.numel() for v in graph.params.values())
    active = sum(v.type.numel() * frac.get(n, 1.0) for n, v in graph.params.items())
    return Cost(
        params=params,
        active_params=round(active),
        weight_bytes=sum(v.type.nbytes() for v in graph.params.values()),
        prefill_flops_per_token=graph_flops(graph, context, 0) / context,
        decode_flops_per_token=float(graph_flops(graph, 1, context - 1)),
        kv_bytes_per_token=kv_bytes_per_token(graph, kv_bits),
        kv_stored_bytes_per_token=kv_bytes_per_token(graph, None),
        kv_max_tokens=kv_max_tokens(graph),
        context=context,
    )


@dataclass(frozen=True)
class QuantizedWeights:
    """The quantized weights of one kind (type spec such as `i4<g32,sym,f16>`) in a graph."""

    spec: str
    count: int
    params: int
    bytes_before: int  # at the graph's float weight dtype
    bytes_after: int  # as stored: data, scales and zero points


def quantized_weights(graph: Graph) -> list[QuantizedWeights]:
    """Per quantization spec: how many weights, and their bytes before and after quantizing.

    "Before" counts each value at the graph's float weight dtype (that of its first float
    parameter; f32 if none is left), the dtype quantization replaced.
    """
    float_bits = next(
        (v.type.dtype.bits for v in graph.params.values() if v.type.dtype.is_float), 32
    )
    kinds: dict[str, list[Value]] = {}
    for v in graph.params.values():
        if v.type.quant is not None:
            kinds.setdefault(f"{v.type.dtype}<{v.type.quant}>", []).append(v)
    return [
        QuantizedWeights(
            spec,
            len(vs),
            sum(v.type.numel() for v in vs),
            sum(v.type.numel() * float_bits // 8 for v in vs),
            sum(v.type.nbytes() for v in vs),
        )
        for spec, vs in kinds.items()
    ]


def per_node(graph: Graph, seq: int = 1, past: int = 0) -> list[tuple[Node, int, int]]:
    """(node, FLOPs, parameter count) for each node."""
    env = flops_env(graph, seq, past)
    rows = []
    for node in graph.nodes:
        params = sum(v.type.numel() for v in node.inputs if v is not None and v.param)
        rows.append((node, node_flops(node, env), params))
    return rows


def to_networkx(graph: Graph) -> nx.MultiDiGraph[tuple[str, Any]]:
    """A networkx view: one vertex per node, input and param; one edge per use.

    Vertices are `("node", i)`, `("input", name)`, `("param", name)`; node
    vertices carry `op`, `attrs` and `types`.
    """
    g: nx.MultiDiGraph[tuple[str, Any]] = nx.MultiDiGraph()
    source: dict[Value, tuple[str, Any]] = {}
    for name, v in graph.inputs.items():
        g.add_node(("input", name), type=str(v.type))
        source[v] = ("input", name)
    for name, v in graph.params.items():
        g.add_node(("param", name), type=str(v.type))
        source[v] = ("param", name)
    for i, node in enumerate(graph.nodes):
        key = ("node", i)
        g.add_node(
            key, op=node.op, attrs=dict(node.attrs), types=[str(v.type) for v in node.outputs]
        )
        for slot, arg in enumerate(node.inputs):
            if arg is not None:
                g.add_edge(source[arg], key, slot=slot)
        for out in node.outputs:
            source[out] = key
    for name, v in graph.outputs.items():
        g.add_node(("output", name))
        g.add_edge(source[v], ("output", name))
    return g


@dataclass(frozen=True)
class NodeCost:
    """One node's share of `cost(graph, context)`: summed over the nodes, each field gives
    the graph's figure (prefill as FLOPs for the whole prompt: divide the sum by `context`)."""

    prefill_flops: int  # for a prompt of `context` tokens
    decode_flops: int  # one new token after `context - 1` cached
    weight_bytes: int  # the parameters this node is the first to read
    kv_bytes_per_token: int  # the past-cache inputs this node is the first to read


def node_costs(graph: Graph, context: int = 4096, kv_bits: int = 16) -> list[NodeCost]:
    """Per node, the FLOPs, weight and KV-cache bytes that `cost` totals (for `irgraph view`).

    A parameter or cache input read by several nodes (tied embeddings) counts once, at its
    first reader, so the columns sum to `cost`'s figures for every parameter that is used.
    """
    if context < 1:
        raise ConfigError("context length must be at least 1", got=context, where="cost")
    prefill, decode = flops_env(graph, context, 0), flops_env(graph, 1, context - 1)
    past = {
        v: v.type.numel({s: 1 for s in v.type.symbols}) * kv_bits // 8
        for name, v in graph.inputs.items()
        if name.startswith(PAST_PREFIX)
    }
    seen: set[Value] = set()
    rows = []
    for node in graph.nodes:
        fresh = [v for v in dict.fromkeys(node.inputs) if v is not None and v not in seen]
        seen.update(fresh)
        rows.append(
            NodeCost(
                node_flops(node, prefill),
                node_flops(node, decode),
                sum(v.type.nbytes() for v in fresh if v.param),
                sum(past.get(v, 0) for v in fresh),
            )
        )
    return rows
