"""`attention_lm`: a 4-layer LM whose layers exercise every attention, rotary and MoE variant.

Layer 0: MLA with interleaved rotary, a grouped sigmoid router and gated experts; layer 1:
ALiBi, softcap, a sliding window, prefix-LM masks, layer norm with bias and yarn partial
rotary; layer 2: T5 relative bias, GQA, dynamic-NTK rotary and ungated experts; layer 3:
llama3 and linear rotary, bidirectional attention without a cache.
"""

from __future__ import annotations

import numpy as np

from irgraph import GraphBuilder


def attention_lm(seed: int = 0):
    vocab, hidden, heads, hd, rank, nope, rope, vdim, experts, ffn = 40, 16, 4, 4, 8, 4, 4, 4, 4, 8
    rng = np.random.default_rng(seed)
    b = GraphBuilder("attention-lm", meta={"vocab_size": vocab})
    ids = b.input("input_ids", "i64[batch, seq]")
    pos = b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    prefix = b.input("prefix_len", "i64[batch]")
    weights: dict[str, np.ndarray] = {}

    def param(name, shape, scale=0.3, offset=0.0):
        weights[name] = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
        return b.param(name, f"f32[{', '.join(map(str, shape))}]")

    def norm(x, name):
        return b.rms_norm(x, param(name, (hidden,), 0.1, 1.0), eps=1e-5)

    def heads_of(x, n, d):
        return b.reshape(x, shape=[0, 0, n, d])

    x = b.embedding(ids, param("embed", (vocab, hidden), 1.0))
    # layer 0: MLA with interleaved rotary, grouped sigmoid router, gated experts
    h = norm(x, "l0.n1")
    q = heads_of(b.linear(h, param("l0.q", (heads * (nope + rope), hidden))), heads, nope + rope)
    q_nope, q_rope = b.split(q, axis=3, sizes=[nope, rope])
    q = b.concat(q_nope, b.rotary(q_rope, pos, interleaved=True), axis=3)
    latent, k_rope = b.split(
        b.linear(h, param("l0.kv_a", (rank + rope, hidden))), axis=2, sizes=[rank, rope]
    )
    latent = b.rms_norm(latent, param("l0.kv_norm", (rank,), 0.1, 1.0))
    k_rope = b.rotary(b.reshape(k_rope, shape=[0, 0, 1, rope]), pos, interleaved=True)
    past = b.input("past_key_values.0.latent", f"f32[batch, past, {rank + rope}]")
    out, present = b.latent_attention(
        q,
        latent,
        k_rope,
        param("l0.kv_b", (heads * (nope + vdim), rank)),
        past,
        mask,
        nope_dim=nope,
        v_dim=vdim,
    )
    b.output("present.0.latent", present)
    x = b.add(
        x,
        b.linear(b.reshape(out, shape=[0, 0, heads * vdim]), param("l0.o", (hidden, heads * vdim))),
    )
    h = norm(x, "l0.n2")
    w, idx = b.moe_router(
        h,
        param("l0.router", (experts, hidden)),
        top_k=2,
        scoring="sigmoid",
        n_group=2,
        topk_group=1,
        scaling=1.5,
    )
    x = b.add(
        x,
        b.moe_experts(
            h,
            w,
            idx,
            param("l0.up", (experts, ffn, hidden)),
            param("l0.down", (experts, hidden, ffn)),
            param("l0.gate", (experts, ffn, hidden)),
            act="silu",
        ),
    )
    # layer 1: ALiBi, softcap, window, prefix-LM, biased layer_norm, yarn partial rotary,
    # biased linears
    h = b.layer_norm(x, param("l1.ln_w", (hidden,), 0.1, 1.0), param("l1.ln_b", (hidden,), 0.1))
    qkv = b.linear(
        h, param("l1.qkv", (3 * heads * hd, hidden)), param("l1.qkv_b", (3 * heads * hd,))
    )
    q, k, v = (heads_of(t, heads, hd) for t in b.split(qkv, axis=2, sizes=[heads * hd] * 3))
    rot = dict(
        rotary_dim=2,
        scaling="yarn",
        factor=4.0,
        original_max_position=8,
        mscale=0.7,
        mscale_all_dim=1.0,
    )
    q, k = b.rotary(q, pos, **rot), b.rotary(k, pos, **rot)
    pk = b.input("past_key_values.1.key", f"f32[batch, {heads}, past, {hd}]")
    pv = b.input("past_key_values.1.value", f"f32[batch, {heads}, past, {hd}]")
    out, k1, v1 = b.attention(
        q, k, v, pk, pv, mask, b.alibi(mask, num_heads=heads), prefix, window=3, softcap=2.0
    )
    b.output("present.1.key", k1)
    b.output("present.1.value", v1)
    x = b.add(
        x, b.linear(b.reshape(out, shape=[0, 0, heads * hd]), param("l1.o", (hidden, heads * hd)))
    )
    # layer 2: T5 relative bias, GQA, dynamic-NTK rotary, softmax router with ungated experts
    h = norm(x, "l2.n1")
    q = b.rotary(
        heads_of(b.linear(h, param("l2.q", (heads * hd, hidden))), heads, hd),
        pos,
        scaling="dynamic_ntk",
        factor=2.0,
        original_max_position=2,
    )
    k = b.rotary(
        heads_of(b.linear(h, param("l2.k", (2 * hd, hidden))), 2, hd),
        pos,
        scaling="dynamic_ntk",
        factor=2.0,
        original_max_position=2,
    )
    v = heads_of(b.linear(h, param("l2.v", (2 * hd, hidden))), 2, hd)
    bias = b.relative_position_bias(
        h, mask, param("l2.rel", (8, heads)), bidirectional=False, max_distance=6
    )
    pk = b.input("past_key_values.2.key", f"f32[batch, 2, past, {hd}]")
    pv = b.input("past_key_values.2.value", f"f32[batch, 2, past, {hd}]")
    out, k2, v2 = b.attention(q, k, v, pk, pv, mask, bias, scale=1.0)
    b.output("present.2.key", k2)
    b.output("present.2.value", v2)
    x = b.add(
        x, b.linear(b.reshape(out, shape=[0, 0, heads * hd]), param("l2.o", (hidden, heads * hd)))
    )
    h = norm(x, "l2.n2")
    w, idx = b.moe_router(h, param("l2.router", (experts, hidden)), top_k=2)
    x = b.add(
        x,
        b.moe_experts(
            h,
            w,
            idx,
            param("l2.up", (experts, ffn, hidden)),
            param("l2.down", (experts, hidden, ffn)),
            act="gelu",
        ),
    )
    # layer 3: llama3 and linear rotary, bidirectional attention over the new tokens only (no cache)
    h = norm(x, "l3.n1")
    q = b.rotary(
        heads_of(b.linear(h, param("l3.q", (heads * hd, hidden))), heads, hd),
        pos,
        scaling="llama3",
        factor=8.0,
        original_max_position=4,
    )
    k = b.rotary(
        heads_of(b.linear(h, param("l3.k", (heads * hd, hidden))), heads, hd),
        pos,
        scaling="linear",
        factor=2.0,
    )
    v = heads_of(b.linear(h, param("l3.v", (heads * hd, hidden))), heads, hd)
    out, _, _ = b.attention(q, k, v, causal=False)
    x = b.add(
        x, b.linear(b.reshape(out, shape=[0, 0, heads * hd]), param("l3.o", (hidden, heads * hd)))
    )
    x = norm(x, "final")
    b.output("logits", b.linear(x, b.graph.params["embed"]))  # tied: one weight, plain and packed
    return b.build(weights)
