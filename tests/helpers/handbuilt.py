"""A hand-built 2-layer LLaMA-style graph (independent of the zoo), used across tests."""

from __future__ import annotations

import numpy as np

from irgraph import GraphBuilder

VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS = 64, 32, 4, 2, 8, 48, 2


def tiny_llama(seed: int = 0, layers: int = LAYERS):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("hand-llama", meta={"vocab_size": VOCAB})
    ids = b.input("input_ids", "i64[batch, seq]")
    pos = b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    weights: dict[str, np.ndarray] = {}

    def param(name: str, shape: tuple[int, ...], scale: float = 0.2, offset: float = 0.0):
        weights[name] = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
        return b.param(name, f"f32[{', '.join(map(str, shape))}]")

    x = b.embedding(ids, param("embed.weight", (VOCAB, HIDDEN), 1.0), hint="x")
    for i in range(layers):
        p = f"layers.{i}."
        pk = b.input(f"past_key_values.{i}.key", f"f32[batch, {KV_HEADS}, past, {HEAD_DIM}]")
        pv = b.input(f"past_key_values.{i}.value", f"f32[batch, {KV_HEADS}, past, {HEAD_DIM}]")
        h = b.rms_norm(x, param(p + "attn_norm.weight", (HIDDEN,), 0.1, 1.0), eps=1e-5)
        q = b.reshape(
            b.linear(h, param(p + "q.weight", (HEADS * HEAD_DIM, HIDDEN))),
            shape=[0, 0, HEADS, HEAD_DIM],
        )
        k = b.reshape(
            b.linear(h, param(p + "k.weight", (KV_HEADS * HEAD_DIM, HIDDEN))),
            shape=[0, 0, KV_HEADS, HEAD_DIM],
        )
        v = b.reshape(
            b.linear(h, param(p + "v.weight", (KV_HEADS * HEAD_DIM, HIDDEN))),
            shape=[0, 0, KV_HEADS, HEAD_DIM],
        )
        q, k = b.rotary(q, pos, hint="q"), b.rotary(k, pos, hint="k")
        attn, present_k, present_v = b.attention(q, k, v, pk, pv, mask, hint="attn")
        b.output(f"present.{i}.key", present_k)
        b.output(f"present.{i}.value", present_v)
        attn = b.reshape(attn, shape=[0, 0, HEADS * HEAD_DIM])
        x = b.add(x, b.linear(attn, param(p + "o.weight", (HIDDEN, HEADS * HEAD_DIM))), hint="x")
        h = b.rms_norm(x, param(p + "mlp_norm.weight", (HIDDEN,), 0.1, 1.0), eps=1e-5)
        gate = b.linear(h, param(p + "gate.weight", (FFN, HIDDEN)))
        up = b.linear(h, param(p + "up.weight", (FFN, HIDDEN)))
        x = b.add(
            x,
            b.linear(b.glu(gate, up, act="silu"), param(p + "down.weight", (HIDDEN, FFN))),
            hint="x",
        )
    x = b.rms_norm(x, param("norm.weight", (HIDDEN,), 0.1, 1.0), eps=1e-5)
    b.output("logits", b.linear(x, param("lm_head.weight", (VOCAB, HIDDEN)), hint="logits"))
    return b.build(weights)
