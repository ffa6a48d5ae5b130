"""Hand-built parallel-block language models for the pass tests (independent of the zoo).

`parallel_lm(shared_norm=True)` is PaLM-like (one norm feeds q/k/v and the MLP);
`shared_norm=False` is GPT-NeoX-like (separate attention and MLP norms). Options
cover separate vs fused q/k/v, gated vs plain MLP, and biases.
"""

from __future__ import annotations

import numpy as np

from irgraph import GraphBuilder

VOCAB, HIDDEN, HEADS, HEAD_DIM, FFN = 50, 32, 4, 8, 64


def parallel_lm(
    *,
    shared_norm: bool = True,
    fused_qkv: bool = False,
    gated: bool = True,
    bias: bool = False,
    kv_heads: int = 1,
    layers: int = 2,
    seed: int = 0,
):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("parallel-lm", meta={"vocab_size": VOCAB})
    ids = b.input("input_ids", "i64[batch, seq]")
    pos = b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    weights: dict[str, np.ndarray] = {}

    def param(name: str, shape: tuple[int, ...], scale: float = 0.2, offset: float = 0.0):
        weights[name] = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
        return b.param(name, f"f32[{', '.join(map(str, shape))}]")

    def linear(h, name: str, out: int, inp: int = HIDDEN, hint: str | None = None):
        bias_p = param(name + ".bias", (out,), 0.1) if bias else None
        return b.linear(h, param(name + ".weight", (out, inp)), bias_p, hint=hint)

    def norm(h, name: str):
        return b.layer_norm(
            h, param(name + ".weight", (HIDDEN,), 0.1, 1.0), param(name + ".bias", (HIDDEN,), 0.1)
        )

    q_out, kv_out = HEADS * HEAD_DIM, kv_heads * HEAD_DIM
    x = b.embedding(ids, param("embed.weight", (VOCAB, HIDDEN), 1.0), hint="x")
    for i in range(layers):
        p = f"layers.{i}."
        pk = b.input(f"past_key_values.{i}.key", f"f32[batch, {kv_heads}, past, {HEAD_DIM}]")
        pv = b.input(f"past_key_values.{i}.value", f"f32[batch, {kv_heads}, past, {HEAD_DIM}]")
        h_attn = norm(x, p + "ln")
        h_mlp = h_attn if shared_norm else norm(x, p + "ln_mlp")
        if fused_qkv:
            qkv = linear(h_attn, p + "attn.qkv", q_out + 2 * kv_out, hint="qkv")
            q, k, v = b.split(qkv, axis=-1, sizes=[q_out, kv_out, kv_out], hint="qkv")
        else:
            q = linear(h_attn, p + "attn.q", q_out, hint="q")
            k = linear(h_attn, p + "attn.k", kv_out, hint="k")
            v = linear(h_attn, p + "attn.v", kv_out, hint="v")
        q = b.rotary(b.reshape(q, shape=[0, 0, HEADS, HEAD_DIM]), pos, hint="q")
        k = b.rotary(b.reshape(k, shape=[0, 0, kv_heads, HEAD_DIM]), pos, hint="k")
        v = b.reshape(v, shape=[0, 0, kv_heads, HEAD_DIM], hint="v")
        attn, present_k, present_v = b.attention(q, k, v, pk, pv, mask, hint="attn")
        b.output(f"present.{i}.key", present_k)
        b.output(f"present.{i}.value", present_v)
        o = linear(
            b.reshape(attn, shape=[0, 0, q_out]), p + "attn.o", HIDDEN, q_out, hint="attn_out"
        )
        if gated:
            act = b.glu(
                linear(h_mlp, p + "mlp.gate", FFN, hint="gate"),
                linear(h_mlp, p + "mlp.up", FFN, hint="up"),
                act="silu",
            )
        else:
            act = b.gelu(linear(h_mlp, p + "mlp.up", FFN, hint="up"))
        d = linear(act, p + "mlp.down", HIDDEN, FFN, hint="mlp_out")
        x = b.add(b.add(x, o), d, hint="x")
    x = norm(x, "final_norm")
    b.output("logits", b.linear(x, param("lm_head.weight", (VOCAB, HIDDEN)), hint="logits"))
    return b.build(weights)
