"""prune-heads: remove a fraction of every attention's heads, GQA-aware (issue 17).

    prune-heads(fraction=0.25, by=activation | taylor)

Kind: arch-change; checked end to end (the KV cache shrinks with the KV heads). For each
attention whose q, k and v come from their own linear through a reshape to heads (and
per-head ops: rotary, norms, casts), int(H·fraction) query heads go, keeping the grouping
valid: with H = KV (MHA) heads go with their keys and values; with one KV head (MQA) query
heads only; with GQA (G = H/KV query heads per KV head) whole KV groups when the count is a
multiple of G, else the same number of query heads from every group when it is a multiple of
KV, else the count is rounded down to one that is (the note says so). Rows of Wq (Wk, Wv) and
columns of Wo follow, the reshapes' head counts and the cache inputs' shapes too.

Importance: `activation` is ‖out_h‖₂·‖Wo[:, head h]‖_F on the calibration data (a KV group:
the sum over its query heads), so a head whose output columns are zero has importance 0 and
removing it is exact; `taylor` is |Σ w·∂L/∂w| over the head's rows and columns, with gradients
from the pass context's provider. Attentions with a position bias input (ALiBi, T5's relative
bias, shared across layers), fused q/k/v or no traceable projections keep their heads; the note
counts them. Pruning every head (fraction 1) is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from irgraph.errors import PassError
from irgraph.ir import Graph, Node, Value
from irgraph.passes.calibrate import evaluate, feeds_for
from irgraph.passes.context import PassContext
from irgraph.passes.equivalence import END_TO_END
from irgraph.passes.graphs import GraphIndex
from irgraph.passes.manager import ARCH_CHANGE, Pass, PassResult, option, register_pass
from irgraph.passes.prune.shrink import shrunk
from irgraph.registry import Category, get_op
from irgraph.types import TensorType

_PER_HEAD = {"rotary", "cast"}  # besides norms over head_dim: ops that keep heads apart


@dataclass(frozen=True)
class Projection:
    """A linear producing q, k or v, and the reshape that splits its output into heads."""

    weight: str
    bias: str | None
    reshape: Node


@dataclass(frozen=True)
class HeadSite:
    """One attention whose heads can be removed."""

    node: Node
    q: Projection
    k: Projection
    v: Projection
    o: str  # the output projection's weight
    o_reshape: Node  # merges the heads before it
    heads: int
    kv_heads: int
    head_dim: int


def head_sites(graph: Graph) -> tuple[list[HeadSite], int]:
    """The attentions whose heads can be removed, and how many others there are."""
    index = GraphIndex(graph)
    sites: list[HeadSite] = []
    skipped = 0
    for node in graph.nodes:
        if get_op(node.op).category is not Category.ATTENTION or node.op != "attention":
            continue
        site = _site(index, node)
        if site is None:
            skipped += 1
        else:
            sites.append(site)
    return sites, skipped


def _site(index: GraphIndex, node: Node) -> HeadSite | None:
    if len(node.inputs) > 6 and node.inputs[6] is not None:  # a per-head position bias
        return None
    projs = [_projection(index, node.inputs[i]) for i in range(3)]
    out = node.outputs[0]
    users = index.users_of(out)
    if any(p is None for p in projs) or len(users) != 1 or users[0].op != "reshape":
        return None
    merge = users[0]
    linear = index.users_of(merge.outputs[0])
    if len(linear) != 1 or linear[0].op != "linear" or linear[0].inputs[0] is not merge.outputs[0]:
        return None
    o = linear[0].inputs[1]
    shape = out.type.shape
    q, k, v = projs
    assert q is not None and k is not None and v is not None
    if o is None or o.param is None or not all(isinstance(d, int) for d in shape[2:]):
        return None
    heads, dim = int(shape[2]), int(shape[3])  # type: ignore[arg-type]
    kv = node.arg(1).type.shape[2]
    if not isinstance(kv, int) or list(merge.attrs["shape"])[-1] not in (heads * dim, -1):
        return None
    return HeadSite(node, q, k, v, o.param, merge, heads, kv, dim)


def _projection(index: GraphIndex, v: Value | None) -> Projection | None:
    """The linear and reshape computing `v` [b, s, heads, head_dim] through per-head ops."""
    reshape = None
    while v is not None:
        node = index.producer.get(v)
        if node is None or not index.single_use(v):
            return None
        op = get_op(node.op)
        if node.op == "linear":
            w, b = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
            ok = w is not None and w.param is not None and (b is None or b.param is not None)
            if not ok or reshape is None or w is None or w.param is None:
                return None
            return Projection(w.param, b.param if b is not None else None, reshape)
        if node.op == "reshape":
            if reshape is not None or len(node.attrs["shape"]) != 4:
                return None
            reshape = node
        elif node.op not in _PER_HEAD and op.category is not Category.NORM:
            return None
        v = node.inputs[0]
    return None


def removal(heads: int, kv: int, n: int) -> tuple[int, str]:
    """(query heads removed, how): "groups" (whole KV groups), "per-group" or "heads" (MHA
    with its KV heads, or MQA query heads only); n rounded down to a valid count."""
    group = heads // kv
    if kv == heads:
        return n, "groups"
    if kv == 1:
        return n, "heads"
    if n % group == 0:
        return n, "groups"
    best_groups, best_per = n - n % group, n - n % kv
    return (best_groups, "groups") if best_groups >= best_per else (best_per, "per-group")


@register_pass
@dataclass(frozen=True)
class PruneHeads(Pass):
    name = "prune-heads"
    kind = ARCH_CHANGE
    check_mode = END_TO_END  # the KV cache loses the removed KV heads
    summary = "remove the least important attention heads (GQA-aware)"
    fraction: float = option(0.25, min=0, doc="share of each attention's query heads, < 1")
    by: Literal["activation", "taylor"] = option("activation", doc="head importance")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fraction < 1:
            raise PassError(
                "option 'fraction' of pass prune-heads: every head of a layer would go",
                expected="0 <= fraction < 1",
                got=self.fraction,
            )

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        sites, skipped = head_sites(graph)
        plans = [(s, *removal(s.heads, s.kv_heads, int(s.heads * self.fraction))) for s in sites]
        plans = [p for p in plans if p[1] > 0]
        kept_note = f"; {skipped} attentions keep their heads (bias, fused or untraceable)"
        if not plans:
            return PassResult(graph, False, "no heads to remove" + kept_note * bool(skipped))
        batches = ctx.need_calibration(self)
        chosen = [p[0] for p in plans]
        if self.by == "taylor":
            grads = ctx.need_gradients(self).gradients(graph, batches)
            scores = self._taylor(graph, chosen, grads)
        else:
            scores = _activation(graph, chosen, batches)
        arrays: dict[str, np.ndarray] = {}
        inputs: dict[str, TensorType] = {}
        attrs: dict[Node, dict[str, Any]] = {}
        for site, n, how in plans:
            keep_q, keep_kv = _choose(scores[site.node], site, n, how)
            _rewrite(graph, site, keep_q, keep_kv, arrays, inputs, attrs)
        result = shrunk(graph, arrays, inputs=inputs, attrs=attrs)
        shown = sorted({f"{s.heads}->{s.heads - n} ({how})" for s, n, how in plans})
        note = f"{len(plans)} attentions: {', '.join(shown)} heads (by {self.by})"
        return PassResult(result, True, note + (kept_note if skipped else ""))

    def _taylor(
        self, graph: Graph, sites: list[HeadSite], grads: Mapping[str, np.ndarray]
    ) -> dict[Node, np.ndarray]:
        out = {}
        for s in sites:

            def wg(name: str) -> np.ndarray:
                if name not in grads:
                    raise PassError(f"the gradient provider gave no gradient for @{name}")
                return np.asarray(graph.weight(name), np.float64) * np.asarray(grads[name])

            d, g = s.head_dim, s.heads // s.kv_heads
            q = wg(s.q.weight).sum(axis=1).reshape(s.heads, d).sum(axis=1)
            o = wg(s.o).sum(axis=0).reshape(s.heads, d).sum(axis=1)
            kv = (wg(s.k.weight) + wg(s.v.weight)).sum(axis=1).reshape(s.kv_heads, d).sum(axis=1)
            out[s.node] = np.abs(q + o + np.repeat(kv, g) / g)
        return out


def _activation(
    graph: Graph, sites: list[HeadSite], batches: tuple[np.ndarray, ...]
) -> dict[Node, np.ndarray]:
    """‖out_h‖₂·‖Wo[:, head h]‖_F per query head of each site."""
    targets = {s.node.outputs[0] for s in sites}
    sq = {s.node: np.zeros(s.heads) for s in sites}
    for ids in batches:
        values = evaluate(graph, feeds_for(graph, ids), targets, {})
        for s in sites:
            a = values[s.node.outputs[0]].astype(np.float64)  # [b, s, H, D]
            sq[s.node] += np.sum(a**2, axis=(0, 1, 3))
    out = {}
    for s in sites:
        wo = np.asarray(graph.weight(s.o), np.float64).reshape(-1, s.heads, s.head_dim)
        out[s.node] = np.sqrt(sq[s.node]) * np.sqrt(np.sum(wo**2, axis=(0, 2)))
    return out


def _choose(score: np.ndarray, s: HeadSite, n: int, how: str) -> tuple[np.ndarray, np.ndarray]:
    """(query heads kept, KV heads kept), sorted; the least important go (ties: the later)."""
    g = s.heads // s.kv_heads
    if how == "groups":
        group = score.reshape(s.kv_heads, g).sum(axis=1)
        keep_kv = np.sort(np.argsort(-group, kind="stable")[: s.kv_heads - n // g])
        keep_q = (keep_kv[:, None] * g + np.arange(g)).reshape(-1)
        return keep_q, keep_kv
    per = n if how == "heads" else n // s.kv_heads  # MQA: one group of all heads
    groups = 1 if how == "heads" else s.kv_heads
    size = s.heads // groups
    by_group = score.reshape(groups, size)
    kept = np.sort(np.argsort(-by_group, axis=1, kind="stable")[:, : size - per], axis=1)
    keep_q = (kept + np.arange(groups)[:, None] * size).reshape(-1)
    return keep_q, np.arange(s.kv_heads)


def _rewrite(
    graph: Graph,
    s: HeadSite,
    keep_q: np.ndarray,
    keep_kv: np.ndarray,
    arrays: dict[str, np.ndarray],
    inputs: dict[str, TensorType],
    attrs: dict[Node, dict[str, Any]],
) -> None:
    d = s.head_dim
    rows_q = (keep_q[:, None] * d + np.arange(d)).reshape(-1)
    rows_kv = (keep_kv[:, None] * d + np.arange(d)).reshape(-1)
    for proj, rows, count in (
        (s.q, rows_q, len(keep_q)),
        (s.k, rows_kv, len(keep_kv)),
        (s.v, rows_kv, len(keep_kv)),
    ):
        arrays[proj.weight] = np.ascontiguousarray(np.asarray(graph.weight(proj.weight))[rows])
        if proj.bias is not None:
            arrays[proj.bias] = np.asarray(graph.weight(proj.bias))[rows]
        shape = list(proj.reshape.attrs["shape"])
        shape[2] = count
        attrs[proj.reshape] = {"shape": shape}
    arrays[s.o] = np.ascontiguousarray(np.asarray(graph.weight(s.o))[:, rows_q])
    merged = list(s.o_reshape.attrs["shape"])
    if merged[-1] != -1:
        merged[-1] = len(keep_q) * d
    attrs[s.o_reshape] = {"shape": merged}
    if len(keep_kv) != s.kv_heads:
        for slot in (3, 4):  # past_key, past_value: graph inputs [batch, kv_heads, past, d]
            v = s.node.inputs[slot] if len(s.node.inputs) > slot else None
            name = next((k for k, x in graph.inputs.items() if x is v), None)
            if v is not None and name is not None:
                shape = list(v.type.shape)
                shape[1] = len(keep_kv)
                inputs[name] = v.type.with_shape(tuple(shape))
