"""A decoder graph's structure, read from its nodes: what picks the llama.cpp architecture.

`read(graph)` runs the GGUF lowering table over the graph (`lowerings.collect`) and turns the
facts into a `Structure`: norm kind and placement, block form (sequential, parallel with one
or two norms, read from which value each norm normalises), position encoding and rotary
layout, MLP form and activation, biases, tied head, attention options, experts and latent
attention. Dimensions come from the weights' shapes and the attention nodes' types. Nothing
here looks at the graph's or the zoo entry's name. Parameter names are the IR's roles
(`layers.{i}.attn.q.weight`), used only to say which norm and which projection a node is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from irgraph.codegen.gguf.lowerings import Facts, collect
from irgraph.errors import CodegenError
from irgraph.ir import Graph
from irgraph.lm import PAST_PREFIX


@dataclass(frozen=True)
class Moe:
    experts: int
    top_k: int
    scoring: str  # softmax | sigmoid
    normalize: bool
    scaling: float
    n_group: int
    topk_group: int
    expert_ffn: int
    shared_ffn: int  # 0 = no shared experts
    first_dense: int  # leading layers with a dense MLP
    dense_layers: tuple[int, ...]  # every layer whose MLP is dense


@dataclass(frozen=True)
class Latent:
    q_rank: int  # 0 = q projected directly
    kv_rank: int
    nope_dim: int
    rope_dim: int
    v_dim: int


@dataclass(frozen=True)
class Structure:
    layers: int
    hidden: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    norm: str  # rms | layer
    norm_eps: float
    norm_offset: float
    norm_bias: bool
    placement: str  # pre | other (post, deepnorm, sandwich)
    block: str  # sequential | parallel (one norm) | parallel_two_norms
    position: str  # rotary | alibi | learned | none
    rotary: dict[str, Any]  # the rotary node's attrs ({} without rotary)
    rotary_dim: int  # features rotated (0 without rotary)
    gated: bool
    act: str
    qkv_bias: bool
    out_bias: bool
    mlp_bias: bool
    lm_head_bias: bool
    tied: bool
    final_norm: bool
    embedding_norm: bool
    causal: bool
    window: int
    softcap: float
    attn_scale: float | None  # None = 1/sqrt(head_dim)
    scaled: tuple[str, ...]  # where `scale` nodes multiply (embeddings, logits, residual)
    max_position: int
    moe: Moe | None = None
    latent: Latent | None = None
    extra: tuple[str, ...] = field(default=())  # params no role explains


def _refuse(message: str, graph: Graph, **kw: Any) -> CodegenError:
    return CodegenError(message, where=f"target gguf, graph {graph.name!r}", **kw)


def _only(values: set[Any], what: str, graph: Graph) -> Any:
    """The one value every layer agrees on (llama.cpp's hyperparameters are per model)."""
    if len(values) != 1:
        raise _refuse(
            f"layers differ in {what}; llama.cpp takes one value per model",
            graph,
            got=sorted(map(str, values)),
        )
    return next(iter(values))


def _dim(graph: Graph, name: str, axis: int) -> int:
    return int(graph.params[name].type.shape[axis])  # type: ignore[arg-type]  # params are static


def _block(f: Facts, layer: int) -> str:
    """sequential | parallel | parallel_two_norms, from the values layer `layer`'s norms read."""
    attn = f.norms.get(f"layers.{layer}.attn_norm.weight")
    mlp = f.norms.get(f"layers.{layer}.mlp_norm.weight")
    if attn is None:
        return "none"
    if mlp is None:
        return "parallel"
    return "parallel_two_norms" if mlp.inputs[0] is attn.inputs[0] else "sequential"


def _placement(f: Facts, graph: Graph) -> str:
    """pre when every layer norm feeds only projections (the residual stream is not normed)."""
    users = graph.users()
    feeds = {"linear", "moe_router", "moe_experts", "reshape", "split"}
    for name, node in f.norms.items():
        if not name.startswith("layers.") or "_post_norm" in name or "_a_norm" in name:
            if "_post_norm" in name:
                return "sandwich"
            continue
        if any(u.op not in feeds for u in users.get(node.outputs[0], [])):
            return "post"
    return "pre"


def _act(f: Facts) -> tuple[bool, str]:
    acts = {str(n.attrs.get("act")) for n in f.glu} | {str(n.attrs.get("act")) for n in f.experts}
    if f.glu or (f.experts and any(n.inputs[5] is not None for n in f.experts)):
        return True, _only(acts, "MLP activation", f.graph)
    names = set()
    for n in f.activations:
        name = n.op
        if n.op == "gelu" and n.attrs.get("approximate", "none") == "tanh":
            name = "gelu_tanh"
        names.add(name)
    names |= {str(n.attrs.get("act")) for n in f.experts}
    return False, _only(names, "MLP activation", f.graph) if names else "none"


def _moe(f: Facts, graph: Graph, layers: int) -> Moe | None:
    if not f.routers:
        return None
    router = f.routers[0]
    ups = [n.inputs[3].param for n in f.experts if n.inputs[3] is not None]
    up = next((p for p in ups if p), None)
    if up is None:
        raise _refuse("a router without expert weights", graph)
    routed = {int(p.split(".")[1]) for p in ups if p}
    dense = tuple(i for i in range(layers) if i not in routed)
    first_dense = next((i for i in range(layers) if i in routed), layers)
    if any(i >= first_dense for i in dense):
        raise _refuse(
            "dense and routed MLP layers alternate; llama.cpp routes every layer after "
            "the first dense ones",
            graph,
            got=f"dense layers {list(dense)}",
        )
    attrs = router.attrs
    prefix = up.rsplit(".moe.", 1)[0]
    shared = f"{prefix}.moe.shared.up.weight"
    return Moe(
        experts=_dim(graph, up, 0),
        top_k=int(attrs["top_k"]),
        scoring=str(attrs.get("scoring", "softmax")),
        normalize=bool(attrs.get("normalize", True)),
        scaling=float(attrs.get("scaling", 1.0)),
        n_group=int(attrs.get("n_group", 1)),
        topk_group=int(attrs.get("topk_group", 1)),
        expert_ffn=_dim(graph, up, 1),
        shared_ffn=_dim(graph, shared, 0) if shared in graph.params else 0,
        first_dense=first_dense,
        dense_layers=dense,
    )


def _latent(f: Facts, graph: Graph) -> Latent | None:
    if not f.latent:
        return None
    node = f.latent[0]
    kv_a = "layers.0.attn.kv_a.weight"
    q_a = "layers.0.attn.q_a.weight"
    rope = int(node.inputs[2].type.shape[-1])  # type: ignore[union-attr,arg-type]
    return Latent(
        q_rank=_dim(graph, q_a, 0) if q_a in graph.params else 0,
        kv_rank=_dim(graph, kv_a, 0) - rope,
        nope_dim=int(node.attrs["nope_dim"]),
        rope_dim=rope,
        v_dim=int(node.attrs["v_dim"]),
    )


def read(graph: Graph) -> Structure:
    """The structure of decoder-only `graph` (CodegenError for what no builder could take)."""
    f = collect(graph)
    if "decoder_input_ids" in graph.inputs or "prefix_len" in graph.inputs:
        raise _refuse(
            "encoder-decoder and prefix-LM graphs have no GGUF session here (decoder-only only)",
            graph,
        )
    layers = len(
        [n for n in graph.inputs if n.startswith(PAST_PREFIX) and n.endswith((".key", ".latent"))]
    )
    if not f.embeddings or "embed.weight" not in graph.params or layers == 0:
        raise _refuse("not a decoder LM with a token embedding and a KV cache", graph)
    attention = f.attention or f.latent
    q = attention[0].inputs[0]
    k = attention[0].inputs[1]
    assert q is not None and k is not None  # required inputs
    heads, head_dim = int(q.type.shape[2]), int(q.type.shape[3])  # type: ignore[arg-type]
    kv_heads = int(k.type.shape[2]) if f.attention else heads  # type: ignore[arg-type]
    norm_nodes = [
        n for name, n in f.norms.items() if name.startswith("layers.") and "_a_norm" not in name
    ]
    norm = _only({n.op for n in norm_nodes}, "norm kind", graph)
    rotary_nodes = list(f.rotary.values())
    rotary = dict(rotary_nodes[0].attrs) if rotary_nodes else {}
    if len({tuple(sorted((k, str(v)) for k, v in n.attrs.items())) for n in rotary_nodes}) > 1:
        raise _refuse("rotary settings differ between layers or projections", graph)
    position = (
        "rotary"
        if rotary_nodes
        else "alibi"
        if f.alibi
        else "learned"
        if "embed_positions.weight" in graph.params
        else "none"
    )
    rope_width = (f.latent and _latent(f, graph).rope_dim) or head_dim  # type: ignore[union-attr]
    gated, act = _act(f)
    up = "layers.0.mlp.up.weight"
    ffn = _dim(graph, up, 0) if up in graph.params else 0
    moe = _moe(f, graph, layers)
    if moe is not None and moe.first_dense == 0 and not ffn:
        ffn = moe.expert_ffn
    used = {"embed.weight", "embed_positions.weight", "lm_head.weight", "lm_head.bias"}
    scaled = []
    producers = graph.producers()
    for node in f.scales:
        src = producers.get(node.inputs[0])  # type: ignore[arg-type]
        scaled.append(
            "embeddings"
            if src is not None and src.op == "embedding"
            else "logits"
            if any(o is node.outputs[0] for o in graph.outputs.values())
            else "residual"
        )
    max_position = int(graph.meta.get("max_position") or 0)
    if "embed_positions.weight" in graph.params:
        max_position = _dim(graph, "embed_positions.weight", 0)
    head = f.linears.get("lm_head.weight") or f.linears.get("embed.weight")
    return Structure(
        layers=layers,
        hidden=_dim(graph, "embed.weight", 1),
        vocab=_dim(graph, "embed.weight", 0),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        ffn=ffn,
        norm="rms" if norm == "rms_norm" else "layer",
        norm_eps=_only({float(n.attrs.get("eps", 1e-5)) for n in norm_nodes}, "norm eps", graph),
        norm_offset=_only(
            {float(n.attrs.get("weight_offset", 0.0)) for n in norm_nodes}, "norm offset", graph
        ),
        norm_bias=any(n.inputs[2] is not None for n in norm_nodes if n.op == "layer_norm"),
        placement=_placement(f, graph),
        block=_only({_block(f, i) for i in range(layers)}, "block form", graph),
        position=position,
        rotary=rotary,
        rotary_dim=int(rotary.get("rotary_dim") or rope_width) if rotary else 0,
        gated=gated,
        act=act,
        qkv_bias=any(
            n.inputs[2] is not None
            for name, n in f.linears.items()
            if name.endswith((".attn.q.weight", ".attn.k.weight", ".attn.v.weight"))
        ),
        out_bias=any(
            n.inputs[2] is not None
            for name, n in f.linears.items()
            if name.endswith(".attn.o.weight")
        ),
        mlp_bias=any(n.inputs[2] is not None for name, n in f.linears.items() if ".mlp." in name),
        lm_head_bias=head is not None and head.inputs[2] is not None,
        tied="lm_head.weight" not in graph.params,
        final_norm="norm.weight" in f.norms,
        embedding_norm="embed_norm.weight" in f.norms,
        causal=all(bool(n.attrs.get("causal", True)) for n in attention),
        window=_only(
            {int(n.attrs.get("window", 0)) for n in f.attention} or {0},
            "attention window (dense and banded layers: GPT-3's sparse pattern)",
            graph,
        ),
        softcap=_only(
            {float(n.attrs.get("softcap", 0.0)) for n in f.attention} or {0.0}, "softcap", graph
        ),
        attn_scale=_only({n.attrs.get("scale") for n in attention}, "attention scale", graph),
        scaled=tuple(scaled),
        max_position=max_position,
        moe=moe,
        latent=_latent(f, graph),
        extra=tuple(
            n
            for n in graph.params
            if n not in used and not n.startswith(("layers.", "norm.", "embed_norm."))
        ),
    )


__all__ = ["Latent", "Moe", "Structure", "read"]
