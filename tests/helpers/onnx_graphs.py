"""Hand-built graphs for the ONNX backend tests.

They complement torch_graphs.kitchen_sink and handbuilt.tiny_llama.

`variant_decoder()`: a 4-layer GQA decoder whose layers differ in what the
ORT flavour's fused ops must express: sliding window + softcap + explicit scale
+ partial llama3 rotary; interleaved YaRN rotary; dynamic-NTK rotary; linear
scaling with layer_norm (bias, weight_offset) and a gelu_tanh MLP.
`primitives()`: every elementwise and tensor op on one input, several outputs.
"""

from __future__ import annotations

import numpy as np

from irgraph import GraphBuilder

VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN = 40, 16, 4, 2, 16, 24

_ROTARY = [
    {
        "rotary_dim": 4,
        "scaling": "llama3",
        "factor": 8.0,
        "original_max_position": 4,
        "base": 500000.0,
    },
    {
        "interleaved": True,
        "scaling": "yarn",
        "factor": 4.0,
        "original_max_position": 4,
        "mscale": 0.7,
        "mscale_all_dim": 0.5,
    },
    {"scaling": "dynamic_ntk", "factor": 2.0, "original_max_position": 3},
    {"scaling": "linear", "factor": 2.0},
]
_ATTENTION = [{"window": 3, "softcap": 5.0, "scale": 0.3}, {}, {"window": 2}, {"softcap": 2.0}]


def variant_decoder(seed: int = 0):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("variant-decoder", meta={"vocab_size": VOCAB})
    ids = b.input("input_ids", "i64[batch, seq]")
    pos = b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    weights: dict[str, np.ndarray] = {}

    def param(name: str, shape: tuple[int, ...], scale: float = 0.3, offset: float = 0.0):
        weights[name] = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
        return b.param(name, f"f32[{', '.join(map(str, shape))}]")

    x = b.embedding(ids, param("embed.weight", (VOCAB, HIDDEN), 1.0))
    for i, (rot, att) in enumerate(zip(_ROTARY, _ATTENTION)):
        p = f"layers.{i}."
        if i == 3:
            h = b.layer_norm(
                x,
                param(p + "ln.weight", (HIDDEN,), 0.1),
                param(p + "ln.bias", (HIDDEN,), 0.1),
                weight_offset=1.0,
            )
        else:
            h = b.rms_norm(x, param(p + "norm.weight", (HIDDEN,), 0.1, 1.0), eps=1e-5)
        q = b.reshape(
            b.linear(h, param(p + "q.weight", (HEADS * HEAD_DIM, HIDDEN))),
            shape=[0, 0, HEADS, HEAD_DIM],
        )
        k = b.reshape(
            b.linear(h, param(p + "k.weight", (KV_HEADS * HEAD_DIM, HIDDEN))),
            shape=[0, 0, KV_HEADS, HEAD_DIM],
        )
        v = b.reshape(
            b.linear(
                h,
                param(p + "v.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
                param(p + "v.bias", (KV_HEADS * HEAD_DIM,)),
            ),
            shape=[0, 0, KV_HEADS, HEAD_DIM],
        )
        q, k = b.rotary(q, pos, **rot), b.rotary(k, pos, **rot)
        pk = b.input(f"past_key_values.{i}.key", f"f32[batch, {KV_HEADS}, past, {HEAD_DIM}]")
        pv = b.input(f"past_key_values.{i}.value", f"f32[batch, {KV_HEADS}, past, {HEAD_DIM}]")
        attn, present_k, present_v = b.attention(q, k, v, pk, pv, mask, **att)
        b.output(f"present.{i}.key", present_k)
        b.output(f"present.{i}.value", present_v)
        x = b.add(
            x,
            b.linear(
                b.reshape(attn, shape=[0, 0, HEADS * HEAD_DIM]),
                param(p + "o.weight", (HIDDEN, HEADS * HEAD_DIM)),
            ),
        )
        h = b.rms_norm(x, param(p + "mlp_norm.weight", (HIDDEN,), 0.1, 1.0))
        up = b.linear(h, param(p + "up.weight", (FFN, HIDDEN)))
        act = (
            b.gelu(up, approximate="tanh")
            if i == 3
            else b.glu(b.linear(h, param(p + "gate.weight", (FFN, HIDDEN))), up, act="silu")
        )
        x = b.add(x, b.linear(act, param(p + "down.weight", (HIDDEN, FFN))))
    x = b.rms_norm(x, param("norm.weight", (HIDDEN,), 0.1, 1.0))
    b.output("logits", b.linear(x, param("lm_head.weight", (VOCAB, HIDDEN))))
    return b.build(weights)


def primitives(seed: int = 0):
    """x f32[batch, seq, 8] through every elementwise and tensor op; returns (graph, feeds)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("primitives")
    x = b.input("x", "f32[batch, seq, 8]")
    idx = b.input("idx", "i64[3]")
    w = b.param("w", "f32[8, 8]")
    outs = []
    pos = b.exp(b.scale(x, factor=0.5))  # > 0 for log / sqrt / rsqrt / pow
    for op in (
        "neg",
        "exp",
        "tanh",
        "sin",
        "cos",
        "erf",
        "sigmoid",
        "relu",
        "relu2",
        "silu",
        "fast_gelu",
    ):
        outs.append(getattr(b, op)(x))
    outs += [b.log(pos), b.sqrt(pos), b.rsqrt(pos), b.gelu(x), b.gelu(x, approximate="tanh")]
    for op in ("add", "sub", "mul", "div", "maximum", "minimum"):
        outs.append(getattr(b, op)(x, pos))
    outs.append(b.pow(pos, x))
    for act in ("relu", "relu2", "gelu", "gelu_tanh", "fast_gelu", "silu", "sigmoid"):
        outs.append(b.glu(x, pos, act=act))
    y = b.matmul(x, w)
    t = b.transpose(y, perm=[0, 2, 1])  # (B, 8, S)
    outs.append(b.transpose(b.softmax(t, axis=1), perm=[0, 2, 1]))
    a, c = b.split(y, axis=2, sizes=[3, 5])
    outs.append(b.concat(c, a, axis=2))
    outs.append(
        b.concat(b.slice(y, axis=2, start=1, end=7, step=2), b.slice(y, axis=2, start=-5), axis=2)
    )
    outs.append(b.reshape(b.gather(y, idx, axis=2), shape=[0, 0, 3]))
    cond = b.cast(b.relu(x), dtype="bool")
    outs.append(b.where(cond, x, pos))
    outs.append(b.cast(b.cast(b.scale(x, factor=3.0), dtype="i64"), dtype="f32"))
    for i, o in enumerate(outs):
        b.output(f"y{i}", o)
    b.output("sum", b.reduce_sum(x, axes=[-1]))
    b.output("mean", b.reduce_mean(x, axes=[1, 2], keepdims=False))
    b.output("max", b.reduce_max(x, axes=[-1]))
    graph = b.build({"w": rng.standard_normal((8, 8)).astype(np.float32)})
    feeds = {"x": rng.standard_normal((2, 3, 8)).astype(np.float32), "idx": np.array([0, 7, 2])}
    return graph, feeds
