"""The benchmark checkpoint as an irgraph graph, for when `irgraph.model_zoo.hf_import` is unavailable.

A direct, LLaMA-only reading of config.json + model.safetensors (weights
memory-mapped, parameter names = checkpoint names). `benchmarks/decode.py`
prefers `import_hf` and falls back to this.
"""

from __future__ import annotations

import json
from pathlib import Path

from irgraph import GraphBuilder
from irgraph.ir import Graph
from irgraph.weights import WeightStore


def llama_graph(hf_dir: Path) -> Graph:
    c = json.loads((hf_dir / "config.json").read_text())
    hidden, heads, kv_heads = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    head_dim, vocab = c.get("head_dim") or hidden // heads, c["vocab_size"]
    theta = (c.get("rope_parameters") or {}).get("rope_theta", c.get("rope_theta", 10000.0))
    eps = c["rms_norm_eps"]
    store = WeightStore.open(hf_dir / "model.safetensors")
    b = GraphBuilder(hf_dir.name, meta={"vocab_size": vocab, "bos_token_id": c.get("bos_token_id"),
                                        "eos_token_id": c.get("eos_token_id"), "pad_token_id": c.get("pad_token_id"),
                                        "max_position_embeddings": c.get("max_position_embeddings")})
    ids = b.input("input_ids", "i64[batch, seq]")
    pos = b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")

    def param(name: str):
        return b.param(name, f"f32[{', '.join(map(str, store[name].shape))}]")

    x = b.embedding(ids, param("model.embed_tokens.weight"))
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = b.rms_norm(x, param(p + "input_layernorm.weight"), eps=eps)
        q = b.reshape(b.linear(h, param(p + "self_attn.q_proj.weight")), shape=[0, 0, heads, head_dim])
        k = b.reshape(b.linear(h, param(p + "self_attn.k_proj.weight")), shape=[0, 0, kv_heads, head_dim])
        v = b.reshape(b.linear(h, param(p + "self_attn.v_proj.weight")), shape=[0, 0, kv_heads, head_dim])
        q, k = b.rotary(q, pos, base=theta), b.rotary(k, pos, base=theta)
        pk = b.input(f"past_key_values.{i}.key", f"f32[batch, {kv_heads}, past, {head_dim}]")
        pv = b.input(f"past_key_values.{i}.value", f"f32[batch, {kv_heads}, past, {head_dim}]")
        attn, present_k, present_v = b.attention(q, k, v, pk, pv, mask)
        b.output(f"present.{i}.key", present_k)
        b.output(f"present.{i}.value", present_v)
        attn = b.reshape(attn, shape=[0, 0, heads * head_dim])
        x = b.add(x, b.linear(attn, param(p + "self_attn.o_proj.weight")))
        h = b.rms_norm(x, param(p + "post_attention_layernorm.weight"), eps=eps)
        gate = b.linear(h, param(p + "mlp.gate_proj.weight"))
        up = b.linear(h, param(p + "mlp.up_proj.weight"))
        x = b.add(x, b.linear(b.glu(gate, up, act="silu"), param(p + "mlp.down_proj.weight")))
    x = b.rms_norm(x, param("model.norm.weight"), eps=eps)
    b.output("logits", b.linear(x, param("lm_head.weight")))
    return b.build(store)
