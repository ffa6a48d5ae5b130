"""Hand-built graphs that exercise every high-level op at once, for the torch backend tests.

`kitchen_sink()` is a 3-layer decoder LM: layer 0 is DeepSeek-style (MLA with
interleaved rotary, grouped sigmoid MoE router, gated experts plus a shared
expert), layer 1 BLOOM/Grok-style (ALiBi bias, softcap, sliding window,
layer_norm with bias, yarn-scaled partial rotary, prefix-LM mask), layer 2
T5-style (relative position bias, softmax router with ungated experts, GQA).
"""

from __future__ import annotations

import numpy as np

from irgraph import GraphBuilder

VOCAB, HIDDEN, HEADS, HEAD_DIM = 48, 16, 4, 4
RANK, NOPE, ROPE, VDIM = 8, 4, 4, 4
EXPERTS, EXPERT_FFN = 4, 8


def kitchen_sink(seed: int = 0):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("kitchen-sink", meta={"vocab_size": VOCAB})
    ids = b.input("input_ids", "i64[batch, seq]")
    pos = b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    prefix = b.input("prefix_len", "i64[batch]")
    weights: dict[str, np.ndarray] = {}

    def param(name: str, shape: tuple[int, ...], scale: float = 0.3, offset: float = 0.0):
        weights[name] = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
        return b.param(name, f"f32[{', '.join(map(str, shape))}]")

    def norm(x, p):
        return b.rms_norm(x, param(p + ".weight", (HIDDEN,), 0.1, 1.0), eps=1e-5)

    x = b.embedding(ids, param("embed.weight", (VOCAB, HIDDEN), 1.0))

    # layer 0: MLA + grouped sigmoid MoE with a shared expert
    p = "layers.0."
    h = norm(x, p + "attn_norm")
    q = b.reshape(
        b.linear(h, param(p + "q.weight", (HEADS * (NOPE + ROPE), HIDDEN))),
        shape=[0, 0, HEADS, NOPE + ROPE],
    )
    q_nope, q_rope = b.split(q, axis=3, sizes=[NOPE, ROPE])
    q = b.concat(q_nope, b.rotary(q_rope, pos, interleaved=True), axis=3)
    latent, k_rope = b.split(
        b.linear(h, param(p + "kv_a.weight", (RANK + ROPE, HIDDEN))), axis=2, sizes=[RANK, ROPE]
    )
    latent = b.rms_norm(latent, param(p + "kv_norm.weight", (RANK,), 0.1, 1.0))
    k_rope = b.rotary(b.reshape(k_rope, shape=[0, 0, 1, ROPE]), pos, interleaved=True)
    past = b.input("past_key_values.0.latent", f"f32[batch, past, {RANK + ROPE}]")
    out, present = b.latent_attention(
        q,
        latent,
        k_rope,
        param(p + "kv_b.weight", (HEADS * (NOPE + VDIM), RANK)),
        past,
        mask,
        nope_dim=NOPE,
        v_dim=VDIM,
    )
    b.output("present.0.latent", present)
    x = b.add(
        x,
        b.linear(
            b.reshape(out, shape=[0, 0, HEADS * VDIM]),
            param(p + "o.weight", (HIDDEN, HEADS * VDIM)),
        ),
    )
    h = norm(x, p + "mlp_norm")
    w, idx = b.moe_router(
        h,
        param(p + "router.weight", (EXPERTS, HIDDEN)),
        top_k=2,
        scoring="sigmoid",
        n_group=2,
        topk_group=1,
        scaling=1.5,
    )
    routed = b.moe_experts(
        h,
        w,
        idx,
        param(p + "experts.up", (EXPERTS, EXPERT_FFN, HIDDEN)),
        param(p + "experts.down", (EXPERTS, HIDDEN, EXPERT_FFN)),
        param(p + "experts.gate", (EXPERTS, EXPERT_FFN, HIDDEN)),
        act="silu",
    )
    shared = b.linear(
        b.gelu(b.linear(h, param(p + "shared.up", (EXPERT_FFN, HIDDEN))), approximate="tanh"),
        param(p + "shared.down", (HIDDEN, EXPERT_FFN)),
    )
    x = b.add(x, b.add(routed, shared))

    # layer 1: ALiBi + softcap + window + prefix-LM, layer_norm with bias and offset,
    # yarn partial rotary
    p = "layers.1."
    h = b.layer_norm(
        x,
        param(p + "ln.weight", (HIDDEN,), 0.1),
        param(p + "ln.bias", (HIDDEN,), 0.1),
        weight_offset=1.0,
    )
    qkv = b.linear(
        h,
        param(p + "qkv.weight", (3 * HEADS * HEAD_DIM, HIDDEN)),
        param(p + "qkv.bias", (3 * HEADS * HEAD_DIM,)),
    )
    q, k, v = (
        b.reshape(t, shape=[0, 0, HEADS, HEAD_DIM])
        for t in b.split(qkv, axis=2, sizes=[HEADS * HEAD_DIM] * 3)
    )
    rot = dict(
        rotary_dim=2,
        scaling="yarn",
        factor=4.0,
        original_max_position=8,
        mscale=0.7,
        mscale_all_dim=0.7,
    )
    q, k = b.rotary(q, pos, **rot), b.rotary(k, pos, **rot)
    pk = b.input("past_key_values.1.key", f"f32[batch, {HEADS}, past, {HEAD_DIM}]")
    pv = b.input("past_key_values.1.value", f"f32[batch, {HEADS}, past, {HEAD_DIM}]")
    out, present_k, present_v = b.attention(
        q,
        k,
        v,
        pk,
        pv,
        mask,
        b.alibi(mask, num_heads=HEADS),
        prefix,
        window=4,
        softcap=2.0,
        scale=0.4,
    )
    b.output("present.1.key", present_k)
    b.output("present.1.value", present_v)
    x = b.add(
        x,
        b.linear(
            b.reshape(out, shape=[0, 0, HEADS * HEAD_DIM]),
            param(p + "o.weight", (HIDDEN, HEADS * HEAD_DIM)),
        ),
    )
    h = norm(x, p + "mlp_norm")
    x = b.add(
        x,
        b.linear(
            b.relu2(b.linear(h, param(p + "up.weight", (32, HIDDEN)))),
            param(p + "down.weight", (HIDDEN, 32)),
        ),
    )

    # layer 2: T5 relative bias, GQA with llama3 rotary, softmax router with ungated experts
    p = "layers.2."
    h = norm(x, p + "attn_norm")
    q = b.reshape(
        b.linear(h, param(p + "q.weight", (HEADS * HEAD_DIM, HIDDEN))),
        shape=[0, 0, HEADS, HEAD_DIM],
    )
    k = b.reshape(b.linear(h, param(p + "k.weight", (HEAD_DIM, HIDDEN))), shape=[0, 0, 1, HEAD_DIM])
    v = b.reshape(b.linear(h, param(p + "v.weight", (HEAD_DIM, HIDDEN))), shape=[0, 0, 1, HEAD_DIM])
    rot = dict(scaling="llama3", factor=8.0, original_max_position=16, base=500000.0)
    q, k = b.rotary(q, pos, **rot), b.rotary(k, pos, **rot)
    bias = b.relative_position_bias(
        h, mask, param(p + "rel_bias", (16, HEADS)), bidirectional=False, max_distance=20
    )
    pk = b.input("past_key_values.2.key", f"f32[batch, 1, past, {HEAD_DIM}]")
    pv = b.input("past_key_values.2.value", f"f32[batch, 1, past, {HEAD_DIM}]")
    out, present_k, present_v = b.attention(q, k, v, pk, pv, mask, bias)
    b.output("present.2.key", present_k)
    b.output("present.2.value", present_v)
    x = b.add(
        x,
        b.linear(
            b.reshape(out, shape=[0, 0, HEADS * HEAD_DIM]),
            param(p + "o.weight", (HIDDEN, HEADS * HEAD_DIM)),
        ),
    )
    h = norm(x, p + "mlp_norm")
    w, idx = b.moe_router(h, param(p + "router.weight", (EXPERTS, HIDDEN)), top_k=2)
    x = b.add(
        x,
        b.moe_experts(
            h,
            w,
            idx,
            param(p + "experts.up", (EXPERTS, EXPERT_FFN, HIDDEN)),
            param(p + "experts.down", (EXPERTS, HIDDEN, EXPERT_FFN)),
            act="gelu",
        ),
    )
    x = norm(x, "norm")
    b.output("logits", b.scale(b.linear(x, param("lm_head.weight", (VOCAB, HIDDEN))), factor=0.5))
    return b.build(weights)


def byte_llama(
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    ffn: int = 64,
    vocab: int = 256,
):
    """A small LLaMA-style decoder over bytes (vocabulary 256 by default), for training tests."""
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads
    b = GraphBuilder("byte-llama", meta={"vocab_size": vocab})
    ids = b.input("input_ids", "i64[batch, seq]")
    pos = b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    weights: dict[str, np.ndarray] = {}

    def param(name: str, shape: tuple[int, ...], scale: float | None = None, offset: float = 0.0):
        std = 1 / np.sqrt(shape[-1]) if scale is None else scale
        weights[name] = (offset + std * rng.standard_normal(shape)).astype(np.float32)
        return b.param(name, f"f32[{', '.join(map(str, shape))}]")

    x = b.embedding(ids, param("embed.weight", (vocab, hidden), 1.0))
    for i in range(layers):
        p = f"layers.{i}."
        h = b.rms_norm(x, param(p + "attn_norm.weight", (hidden,), 0.0, 1.0))
        q = b.reshape(
            b.linear(h, param(p + "q.weight", (heads * head_dim, hidden))),
            shape=[0, 0, heads, head_dim],
        )
        k = b.reshape(
            b.linear(h, param(p + "k.weight", (kv_heads * head_dim, hidden))),
            shape=[0, 0, kv_heads, head_dim],
        )
        v = b.reshape(
            b.linear(h, param(p + "v.weight", (kv_heads * head_dim, hidden))),
            shape=[0, 0, kv_heads, head_dim],
        )
        pk = b.input(f"past_key_values.{i}.key", f"f32[batch, {kv_heads}, past, {head_dim}]")
        pv = b.input(f"past_key_values.{i}.value", f"f32[batch, {kv_heads}, past, {head_dim}]")
        out, present_k, present_v = b.attention(b.rotary(q, pos), b.rotary(k, pos), v, pk, pv, mask)
        b.output(f"present.{i}.key", present_k)
        b.output(f"present.{i}.value", present_v)
        x = b.add(
            x,
            b.linear(b.reshape(out, shape=[0, 0, hidden]), param(p + "o.weight", (hidden, hidden))),
        )
        h = b.rms_norm(x, param(p + "mlp_norm.weight", (hidden,), 0.0, 1.0))
        gate = b.linear(h, param(p + "gate.weight", (ffn, hidden)))
        up = b.linear(h, param(p + "up.weight", (ffn, hidden)))
        x = b.add(x, b.linear(b.glu(gate, up, act="silu"), param(p + "down.weight", (hidden, ffn))))
    x = b.rms_norm(x, param("norm.weight", (hidden,), 0.0, 1.0))
    b.output("logits", b.linear(x, param("lm_head.weight", (vocab, hidden))))
    return b.build(weights)
