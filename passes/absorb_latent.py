"""absorb-latent: DeepSeek-v2's latent attention rewritten so attention runs over the latent cache.

`latent_attention` is defined by re-expanding keys and values from the cached latent c
with kv_b = [W_k; W_v] per head (ops/attention.py). Since q_nope·(c·W_kᵀ) = (q_nope·W_k)·c
and p·(c·W_vᵀ) = (p·c)·W_vᵀ, W_k folds into the query and W_v into the output:

    cache  = concat(past_latent, [latent, k_rope])           (B, T, R+rope)  present.{i}.latent
    query  = [q_nope @ W_k, q_rope]                           (B, S, H, R+rope)
    o      = attention(query, k=cache, v=cache[..., :R])      one KV head for every query head
    out    = o @ W_vᵀ                                         (B, S, H, v_dim)

The cache stays ONE tensor of [batch, past, kv_rank + rope] per layer (values are a slice
of it), so KV bytes per token do not change; keys and values are never re-expanded, so a
decoded token reads R+rope numbers per cached token instead of heads·(nope+v_dim) after the
expansion. W_k and W_v become parameters of their own (the slices of kv_b). Exact up to
float rounding; the backends lower the result with their ordinary attention and matmul.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from irgraph.errors import PassError
from irgraph.ir import Graph, Node
from irgraph.passes.context import PassContext
from irgraph.passes.graphs import GraphIndex
from irgraph.passes.manager import EXACT, Pass, PassResult, register_pass
from irgraph.passes.rewrite import Rewriter
from irgraph.types import TensorType

NO_LATENT = "the graph has no latent attention"


@register_pass
@dataclass(frozen=True)
class AbsorbLatent(Pass):
    name = "absorb-latent"
    kind = EXACT
    summary = "latent attention as attention over the latent cache, W_k/W_v folded into q and out"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        index = GraphIndex(graph)
        sites = [n for n in graph.nodes if n.op == "latent_attention"]
        if not sites:
            return PassResult(graph, False, NO_LATENT)
        rw = Rewriter(graph)
        skipped = []
        for node in sites:
            reason = _problem(node)
            if reason:
                skipped.append(f"{index.describe(node)}: {reason}")
                continue
            _absorb(rw, node)
        if not rw.changed:
            return PassResult(graph, False, "; ".join(skipped))
        note = f"absorbed {len(sites) - len(skipped)} latent attentions"
        if skipped:
            note += f"; left {len(skipped)}: {skipped[0]}"
        return PassResult(rw.finish(), True, note)


def _problem(node: Node) -> str | None:
    kv_b = node.inputs[3]
    if kv_b is None or kv_b.param is None:
        return "kv_b is computed, not a parameter"
    if not kv_b.type.dtype.is_float:
        return f"kv_b is quantized ({kv_b.type.dtype}); absorb before quantizing"
    return None


def _absorb(rw: Rewriter, node: Node) -> None:
    q, latent, k_rope, kv_b = (node.arg(i) for i in range(4))
    past, key_mask = (node.inputs[i] if i < len(node.inputs) else None for i in (4, 5))
    nope, dv = node.attrs["nope_dim"], node.attrs["v_dim"]
    heads, dq, rank = q.type.shape[2], q.type.shape[3], latent.type.shape[2]
    if not (isinstance(heads, int) and isinstance(dq, int) and isinstance(rank, int)):
        raise PassError(  # latent_attention's infer already insists on these
            "latent attention needs static heads, head_dim and kv rank",
            got=f"{heads}, {dq}, {rank}",
        )
    rope = dq - nope
    scale = node.attrs["scale"] or 1 / math.sqrt(dq)
    prefix = (kv_b.param or "kv_b").removesuffix(".weight")
    w = None
    if rw.has_weights:
        w = rw.weight(kv_b).reshape(heads, nope + dv, rank)  # per head: W_k rows, then W_v rows
    wt = kv_b.type.dtype
    w_k = rw.param(
        f"{prefix}.w_k",
        TensorType(wt, (heads, nope, rank)),
        None if w is None else w[:, :nope],
    )
    w_vt = rw.param(
        f"{prefix}.w_v_t",
        TensorType(wt, (heads, rank, dv)),
        None if w is None else np.transpose(w[:, nope:], (0, 2, 1)),
    )
    rw.at(node)
    new = rw.emit(
        "concat", latent, rw.emit("reshape", k_rope, shape=[0, 0, rope]), axis=2
    )  # (B, S, R+rope)
    cache = new if past is None else rw.emit("concat", past, new, axis=1, hint="latent_cache")
    q_nope, q_rope = rw.emit("split", q, axis=3, sizes=[nope, rope])
    q_abs = rw.emit("matmul", rw.emit("transpose", q_nope, perm=[0, 2, 1, 3]), w_k)  # (B, H, S, R)
    query = rw.emit(
        "concat", rw.emit("transpose", q_abs, perm=[0, 2, 1, 3]), q_rope, axis=3, hint="q_abs"
    )  # (B, S, H, R+rope)
    keys = rw.emit("reshape", cache, shape=[0, 0, 1, rank + rope])  # (B, T, 1, R+rope)
    values = rw.emit("slice", keys, axis=3, start=0, end=rank)  # (B, T, 1, R)
    out, _, _ = rw.emit(
        "attention",
        query,
        keys,
        values,
        None,
        None,
        key_mask,
        causal=node.attrs["causal"],
        scale=scale,
        hint="attn_latent",
    )  # (B, S, H, R)
    out = rw.emit("matmul", rw.emit("transpose", out, perm=[0, 2, 1, 3]), w_vt)  # (B, H, S, v_dim)
    out = rw.emit("transpose", out, perm=[0, 2, 1, 3], hint=node.outputs[0].hint)
    rw.replace(node.outputs[0], out)
    rw.replace(node.outputs[1], cache)
