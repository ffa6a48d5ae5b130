"""The GGUF lowering table: what each IR op tells about the graph's llama.cpp architecture.

A GGUF file holds weights and hyperparameters, not a program: llama.cpp runs its own graph
builder per architecture. So the GGUF "lowering" of a node records what it says about the
structure (which norm, which activation, rotary layout, attention options, routing) into a
`Facts` context, and `structure.read` decides the architecture from those facts. An op no
llama.cpp builder has (relative-position bias, add_rms_norm, ...) has no row here, so
`LOWERINGS.missing` names it before anything else is done.

The backend value of a node output is a tag: the parameter it is a view of (a projection's
weight, followed through reshape / split / rotary), or None. That is how a `rotary` node knows
whether it rotates the query or the key projection.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from irgraph.activations import ACTIVATIONS
from irgraph.codegen.lowering import LoweringTable
from irgraph.errors import CodegenError
from irgraph.ir import Graph, Node
from irgraph.quant import ACT_NONE

Tag = str | None  # the parameter a value is a view of, or None


@dataclass
class Facts:
    """Nodes by their role, as the lowerings saw them (the context of the GGUF table)."""

    graph: Graph
    embeddings: list[Node] = field(default_factory=list)
    norms: dict[str, Node] = field(default_factory=dict)  # norm weight -> node
    linears: dict[str, Node] = field(default_factory=dict)  # weight -> node
    rotary: dict[str, Node] = field(default_factory=dict)  # rotated projection weight -> node
    attention: list[Node] = field(default_factory=list)
    latent: list[Node] = field(default_factory=list)
    alibi: list[Node] = field(default_factory=list)
    glu: list[Node] = field(default_factory=list)
    activations: list[Node] = field(default_factory=list)
    routers: list[Node] = field(default_factory=list)
    experts: list[Node] = field(default_factory=list)
    scales: list[Node] = field(default_factory=list)


LOWERINGS: LoweringTable[Facts, Tag] = LoweringTable("gguf")
lowers = LOWERINGS.lowers


def _param(node: Node, i: int) -> str | None:
    v = node.inputs[i] if i < len(node.inputs) else None
    return v.param if v is not None else None


@lowers("reshape", "transpose", "cast", "split", "concat")
def _view(f: Facts, node: Node, *tags: Any) -> list[Tag]:
    """Views keep the tag of their first input (a split of a projection is still it)."""
    return [tags[0]] * len(node.outputs)


@lowers("add")
def _add(f: Facts, node: Node, *tags: Any) -> list[Tag]:
    return [None]


@lowers("scale")
def _scale(f: Facts, node: Node, x: Tag) -> list[Tag]:
    f.scales.append(node)
    return [None]


@lowers("embedding")
def _embedding(f: Facts, node: Node, ids: Tag, weight: Tag) -> list[Tag]:
    f.embeddings.append(node)
    return [None]


@lowers("linear")
def _linear(f: Facts, node: Node, x: Tag, weight: Tag, bias: Tag = None) -> list[Tag]:
    if node.attrs.get("act_quant", ACT_NONE) != ACT_NONE:  # ggml quantizes per 32-value block
        raise CodegenError(
            "a W8A8 linear (int8 activations per token) has no llama.cpp form",
            expected="a graph without quantize(method=w8a8), e.g. quantize(method=rtn, bits=8)",
            got=f'linear(..., @{_param(node, 1)}) {{act_quant="{node.attrs["act_quant"]}"}}',
            where="target gguf",
        )
    name = _param(node, 1)
    if name is not None:
        f.linears[name] = node
    return [name]


@lowers("rms_norm", "layer_norm")
def _norm(f: Facts, node: Node, *tags: Any) -> list[Tag]:
    name = _param(node, 1)
    if name is not None:
        f.norms[name] = node
    return [None]


@lowers("rotary")
def _rotary(f: Facts, node: Node, x: Tag, positions: Tag) -> list[Tag]:
    if x is not None:
        f.rotary[x] = node
    return [x]


@lowers("attention")
def _attention(f: Facts, node: Node, *tags: Any) -> list[Tag]:
    f.attention.append(node)
    return [None, None, None]


@lowers("latent_attention")
def _latent(f: Facts, node: Node, *tags: Any) -> list[Tag]:
    f.latent.append(node)
    return [None] * len(node.outputs)


@lowers("alibi")
def _alibi(f: Facts, node: Node, *tags: Any) -> list[Tag]:
    f.alibi.append(node)
    return [None]


@lowers("glu")
def _glu(f: Facts, node: Node, gate: Tag, up: Tag) -> list[Tag]:
    f.glu.append(node)
    return [None]


@lowers("gelu", *(name for name, act in ACTIVATIONS.items() if act.unary_op))
def _activation(f: Facts, node: Node, x: Tag) -> list[Tag]:
    f.activations.append(node)
    return [None]


@lowers("moe_router")
def _router(f: Facts, node: Node, *tags: Any) -> list[Tag]:
    f.routers.append(node)
    return [None] * len(node.outputs)


@lowers("moe_experts")
def _experts(f: Facts, node: Node, *tags: Any) -> list[Tag]:
    f.experts.append(node)
    return [None]


def collect(graph: Graph) -> Facts:
    """Run every node's GGUF lowering over `graph` (CodegenError first for ops none has)."""
    from irgraph.registry import get_op

    LOWERINGS.missing(graph, where="target gguf (ops no llama.cpp graph builder has)")
    facts = Facts(graph)
    tags: dict[Any, Tag] = {v: v.param for v in graph.params.values()}
    for node in graph.nodes:
        op = get_op(node.op)  # the facts hold nodes with every input slot and attribute
        node = dataclasses.replace(
            node, inputs=tuple(op.pad(node.inputs)), attrs=op.check_attrs(node.attrs)
        )
        outs = LOWERINGS[node.op](facts, node, *(tags.get(v) for v in node.inputs))
        for v, tag in zip(node.outputs, outs):
            tags[v] = tag
    return facts


__all__ = ["LOWERINGS", "Facts", "Tag", "collect"]
