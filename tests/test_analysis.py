"""Cost analysis against hand-computed numbers, and the networkx view's structure.

tiny_llama: vocab 64, hidden 32, 4 query heads / 2 KV heads of 8, SwiGLU ffn 48, 2 layers.
"""

from __future__ import annotations

import networkx as nx
import pytest

from irgraph import GraphBuilder
from irgraph.analysis import cost, per_node, to_networkx
from tests.helpers.handbuilt import tiny_llama

# Parameters, written out: embedding, per layer (2 norms, q, k, v, o, gate, up, down),
# final norm, lm_head.
LAYER_PARAMS = 32 + 32 * 32 + 16 * 32 + 16 * 32 + 32 * 32 + 32 + 3 * 48 * 32  # = 7744
PARAMS = 64 * 32 + 2 * LAYER_PARAMS + 32 + 64 * 32  # = 19616
# FLOPs per token that do not depend on the context: per layer 2 rms_norms (5/elem), the
# linears (2·in·out), rotary (3/elem of q and k), 2 residual adds, glu (5/elem); then the final
# norm and lm_head.
LAYER_FLOPS = (
    2 * 5 * 32
    + 2 * (32 * 32 + 16 * 32 + 16 * 32 + 32 * 32 + 3 * 48 * 32)
    + 3 * (32 + 16)
    + 2 * 32
    + 5 * 48
)
FIXED_FLOPS = 2 * LAYER_FLOPS + 5 * 32 + 2 * 64 * 32  # = 36512
# Attention: QKᵀ and PV over every key, 2·heads·(d + dv) per (query, key) pair, both layers.
ATTN_PER_KEY = 2 * (2 * 4 * (8 + 8))  # = 256


def test_tiny_llama_params_and_bytes():
    c = cost(tiny_llama())
    assert PARAMS == 19616 and c.params == PARAMS and c.active_params == PARAMS
    assert c.weight_bytes == 4 * PARAMS


@pytest.mark.parametrize("context", [1, 16, 4096])
def test_tiny_llama_flops_per_token(context):
    c = cost(tiny_llama(), context=context)
    assert FIXED_FLOPS == 36512
    # Prefill counts the full context×context score matrix (dense kernels), decode one row of it.
    assert c.prefill_flops_per_token == FIXED_FLOPS + ATTN_PER_KEY * context
    assert c.decode_flops_per_token == FIXED_FLOPS + ATTN_PER_KEY * context
    assert c.context == context


def test_tiny_llama_kv_bytes_per_token():
    # 2 layers × (key + value) × 2 KV heads × head_dim 8 values per token.
    assert cost(tiny_llama()).kv_bytes_per_token == 2 * 2 * 2 * 8 * 2
    assert cost(tiny_llama(), kv_bits=32).kv_bytes_per_token == 2 * 2 * 2 * 8 * 4


def test_per_node_rows():
    graph = tiny_llama()
    rows = per_node(graph, seq=3)
    assert len(rows) == len(graph.nodes) == 41
    by_line = {
        (n.op, n.inputs[1].param if len(n.inputs) > 1 and n.inputs[1] is not None else None): (f, p)
        for n, f, p in rows
    }
    assert by_line[("linear", "layers.0.q.weight")] == (2 * 3 * 32 * 32, 32 * 32)
    assert by_line[("linear", "lm_head.weight")] == (2 * 3 * 64 * 32, 64 * 32)
    assert by_line[("embedding", "embed.weight")] == (0, 64 * 32)
    assert sum(p for _, _, p in rows) == PARAMS  # every param is used exactly once
    attention = [f for n, f, _ in rows if n.op == "attention"]
    assert attention == [2 * 4 * 3 * 3 * 16] * 2


def test_moe_active_params():
    experts, top_k, hidden, ffn = 8, 2, 16, 24
    b = GraphBuilder("moe")
    x = b.input("x", f"f32[batch, seq, {hidden}]")
    w, idx = b.moe_router(x, b.param("router", f"f32[{experts}, {hidden}]"), top_k=top_k)
    stacked = f"f32[{experts}, {ffn}, {hidden}]"
    y = b.moe_experts(
        x,
        w,
        idx,
        b.param("up", stacked),
        b.param("down", f"f32[{experts}, {hidden}, {ffn}]"),
        b.param("gate", stacked),
        act="silu",
    )
    b.output("y", y)
    c = cost(b.build(), context=10)
    expert_params = 3 * experts * ffn * hidden
    assert c.params == experts * hidden + expert_params
    assert c.active_params == experts * hidden + expert_params * top_k // experts
    # Router 2·E·H per token, then k experts of three ffn×hidden matmuls each.
    assert c.prefill_flops_per_token == 2 * experts * hidden + top_k * 3 * 2 * ffn * hidden


def test_to_networkx_structure():
    graph = tiny_llama()
    g = to_networkx(graph)
    assert nx.is_directed_acyclic_graph(g)
    kinds = [k for k, _ in g.nodes]
    assert kinds.count("input") == 7 and kinds.count("param") == 21 and kinds.count("output") == 5
    assert kinds.count("node") == 41
    ops = nx.get_node_attributes(g, "op")
    assert sorted(i for (_, i), op in ops.items() if op == "attention") == [10, 29]
    assert g.nodes[("node", 0)]["types"] == ["f32[batch, seq, 32]"]
    # Edges carry the input slot: the cache inputs feed attention's past_key/past_value slots.
    slots = {(u, v): d["slot"] for u, v, d in g.edges(data=True) if "slot" in d}
    assert slots[(("input", "past_key_values.0.key"), ("node", 10))] == 3
    assert slots[(("input", "past_key_values.1.value"), ("node", 29))] == 4
    assert slots[(("param", "embed.weight"), ("node", 0))] == 1
    assert list(g.predecessors(("output", "logits"))) == [("node", 40)]
    assert ops[("node", 40)] == "linear"
    # Every parameter is used once; the input_ids feed only the embedding.
    assert all(g.out_degree(("param", p)) == 1 for p in graph.params)
    assert list(g.successors(("input", "input_ids"))) == [("node", 0)]
    # Each present output hangs off an attention node.
    for name in ("present.0.key", "present.1.value"):
        (src,) = g.predecessors(("output", name))
        assert ops[src] == "attention"


def test_latent_attention_counts_the_absorbed_form():
    """DeepSeek-v2's attention at 4096 context, per head.

    q_nope·W_k, scores over [c, k_rope], p·c, then W_v.
    """
    from irgraph.model_zoo import build

    graph = build("deepseek-v2", size="published")
    node = next(n for n in graph.nodes if n.op == "latent_attention")
    heads, nope, rope, v_dim, rank = 128, 128, 64, 128, 512
    assert node.attrs["nope_dim"] == nope and node.outputs[0].type.shape[2:] == (heads, v_dim)
    total = 4096
    absorbed = 2 * heads * (nope * rank + total * (rank + rope + rank) + rank * v_dim)
    (row,) = [r for r in per_node(graph, seq=1, past=total - 1) if r[0] is node]
    assert row[1] == absorbed  # ~1.2 GFLOP per layer; re-expanding K/V would be ~137 GFLOP
    assert absorbed * 100 < 2 * total * rank * heads * (nope + v_dim)
