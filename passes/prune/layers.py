"""drop-layers: remove whole blocks, the ones that change their input least (issue 17).

    drop-layers(n=1, by=block-influence)

Kind: arch-change. ShortGPT (Men et al. 2024): a block's influence is 1 - cos(x_in, x_out),
the cosine between the residual stream entering and leaving it, averaged over calibration
tokens; the n blocks with the lowest influence go. Their output's readers read their input
instead, their KV-cache inputs and outputs leave the graph and the remaining ones are
renumbered `past_key_values.0..` / `present.0..` (the cache contract stays contiguous).

Blocks are found from the graph (no names read): starting at each embedding, the residual
stream is the chain of adds that read it and something computed from it; a segment of that
chain holding a self-attention (whose keys are computed from the segment's own input) starts
a block, the next segments up to the next self-attention belong to it (the MLP; in an
encoder-decoder decoder, the cross-attention). Dropping every block of a stack is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from irgraph.errors import PassError
from irgraph.ir import Graph, Node, Value
from irgraph.passes.calibrate import evaluate, feeds_for
from irgraph.passes.context import PassContext
from irgraph.passes.equivalence import END_TO_END
from irgraph.passes.graphs import GraphIndex, live_nodes
from irgraph.passes.manager import ARCH_CHANGE, Pass, PassResult, option, register_pass
from irgraph.registry import Category, get_op
from irgraph.sparsity import META_KEY, with_records
from irgraph.weights import WeightStore

_CACHE = re.compile(r"^(past_key_values|present)\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class Block:
    """One block of a residual stack: the stream value entering and leaving it."""

    stack: int  # which residual chain (encoder, decoder)
    input: Value
    output: Value


def residual_blocks(graph: Graph) -> list[Block]:
    """The blocks of every residual stack of `graph`, in order (see the module docstring)."""
    index = GraphIndex(graph)
    blocks: list[Block] = []
    starts = [n.outputs[0] for n in graph.nodes if get_op(n.op).category is Category.EMBEDDING]
    for stack, start in enumerate(starts):
        chain = [start]
        while True:
            r = chain[-1]
            nxt = [
                n.outputs[0]
                for n in index.users_of(r)
                if n.op == "add"
                and any(
                    x is not r and x is not None and index.depends_on(x, start) for x in n.inputs
                )
            ]
            if len(nxt) != 1:
                break
            chain.append(nxt[0])
        first: Value | None = None
        for a, b in zip(chain, chain[1:]):
            if _self_attention(index, a, b):
                if first is not None:
                    blocks.append(Block(stack, first, a))
                first = a
        if first is not None:
            blocks.append(Block(stack, first, chain[-1]))
    return blocks


def _self_attention(index: GraphIndex, a: Value, b: Value) -> bool:
    """Whether the segment a -> b holds an attention whose keys are computed from `a`."""
    add = index.producer[b]
    stack = [x for x in add.inputs if x is not None and x is not a]
    seen: set[Value] = set()
    while stack:
        v = stack.pop()
        node = index.producer.get(v)
        if node is None or v in seen or v is a:
            continue
        seen.add(v)
        if get_op(node.op).category is Category.ATTENTION and index.depends_on(node.arg(1), a):
            return True
        stack.extend(x for x in node.inputs if x is not None)
    return False


def block_influence(graph: Graph, blocks: list[Block], batches: list[np.ndarray]) -> list[float]:
    """1 - mean cos(x_in, x_out) over the calibration tokens, per block."""
    targets = {v for b in blocks for v in (b.input, b.output)}
    sums = np.zeros(len(blocks))
    rows = 0
    for ids in batches:
        values = evaluate(graph, feeds_for(graph, ids), targets, {})
        for i, b in enumerate(blocks):
            x = values[b.input].reshape(-1, values[b.input].shape[-1]).astype(np.float64)
            y = values[b.output].reshape(-1, x.shape[-1]).astype(np.float64)
            norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
            sums[i] += np.sum((x * y).sum(axis=1) / np.maximum(norms, 1e-30))
        rows += int(np.prod(values[blocks[0].input].shape[:-1]))
    return list(1.0 - sums / max(rows, 1))


def drop_blocks(graph: Graph, dropped: list[Block]) -> Graph:
    """`graph` without the `dropped` blocks; the cache names renumbered contiguously."""
    subst: dict[Value, Value] = {}
    for b in dropped:  # in stream order: a run of dropped blocks maps to the first one's input
        subst[b.output] = subst.get(b.input, b.input)
    index = GraphIndex(graph)
    inside: set[Node] = set()
    for b in dropped:  # the nodes computed from the block's input that its output needs
        inside.update(n for n in _between(index, b.input, b.output))
    nodes = [
        Node(
            n.op,
            tuple(subst.get(v, v) if v is not None else None for v in n.inputs),
            n.outputs,
            n.attrs,
        )
        for n in graph.nodes
    ]
    dropped_outs = {o for n in inside for o in n.outputs}
    outputs = {k: subst.get(v, v) for k, v in graph.outputs.items() if v not in dropped_outs}
    result = Graph(
        graph.name,
        dict(graph.inputs),
        dict(graph.params),
        nodes,
        outputs,
        dict(graph.meta),
        graph.weights,
    )
    result.nodes = live_nodes(result)
    used = {v for n in result.nodes for v in n.inputs if v is not None} | set(outputs.values())
    result.params = {k: v for k, v in graph.params.items() if v in used}
    result.inputs = _renumbered(
        {k: v for k, v in graph.inputs.items() if v in used or not _CACHE.match(k)}
    )
    result.outputs = _renumbered(result.outputs)
    if graph.weights is not None:
        result.weights = WeightStore({n: graph.weights[n] for n in result.stored_names()})
    if META_KEY in result.meta:
        result.meta = with_records(result.meta, {}, result.params)
    return result


def _between(index: GraphIndex, a: Value, b: Value) -> list[Node]:
    """Nodes that `b` needs and that need `a`."""
    out = []
    stack = [b]
    seen: set[Value] = set()
    while stack:
        v = stack.pop()
        node = index.producer.get(v)
        if node is None or v in seen or v is a:
            continue
        seen.add(v)
        if index.depends_on(v, a):
            out.append(node)
            stack.extend(x for x in node.inputs if x is not None)
    return out


def _renumbered(named: dict[str, Value]) -> dict[str, Value]:
    """past_key_values.{i}.* / present.{i}.* renumbered 0, 1, ... in order of i."""
    layers = sorted({int(m.group(2)) for k in named if (m := _CACHE.match(k))})
    new = {old: i for i, old in enumerate(layers)}
    out = {}
    for k, v in named.items():
        m = _CACHE.match(k)
        out[f"{m.group(1)}.{new[int(m.group(2))]}.{m.group(3)}" if m else k] = v
    return out


@register_pass
@dataclass(frozen=True)
class DropLayers(Pass):
    name = "drop-layers"
    kind = ARCH_CHANGE
    check_mode = END_TO_END  # the KV cache loses the dropped blocks' entries
    summary = "remove the n blocks whose output is most like their input (ShortGPT)"
    n: int = option(1, min=1, doc="blocks to remove")
    by: Literal["block-influence"] = option("block-influence", doc="block importance")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        blocks = residual_blocks(graph)
        stacks = {b.stack for b in blocks}
        if self.n >= len(blocks) or not blocks:
            raise PassError(
                "drop-layers would drop every block",
                expected=f"n < {len(blocks)} (the graph's blocks)",
                got=f"n={self.n}",
            )
        scores = block_influence(graph, blocks, list(ctx.need_calibration(self)))
        order = sorted(range(len(blocks)), key=lambda i: (scores[i], i))
        chosen: list[int] = []
        for i in order:  # lowest influence first, never a stack's last block
            left = [
                j
                for j in range(len(blocks))
                if j not in chosen and blocks[j].stack == blocks[i].stack
            ]
            if len(left) > 1:
                chosen.append(i)
            if len(chosen) == self.n:
                break
        if len(chosen) < self.n:
            raise PassError(
                "drop-layers would drop every block of a stack",
                expected=f"n <= {len(blocks) - len(stacks)}",
                got=f"n={self.n}",
            )
        result = drop_blocks(graph, [blocks[i] for i in sorted(chosen)])
        shown = ", ".join(f"#{i} ({scores[i]:.3g})" for i in sorted(chosen))
        return PassResult(result, True, f"dropped {self.n} of {len(blocks)} blocks: {shown}")
