"""fuse-parallel-attention, fuse-qkv, fuse-gate-up on hand-built blocks: IR, matmuls, numbers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import irgraph
from irgraph.passes import check_equivalent, explain, find_rules, run_pipeline
from irgraph.weights import WeightStore
from tests.helpers.handbuilt import tiny_llama
from tests.helpers.pass_models import parallel_lm


def linears_by_layer(g: irgraph.Graph) -> Counter:
    """How many linear nodes read weights of each layer ('layers.0', ..., 'lm_head')."""
    count: Counter = Counter()
    for n in g.nodes:
        if n.op in ("linear", "matmul"):
            name = n.inputs[1].param or "?"
            count[
                ".".join(name.split(".")[:2]) if name.startswith("layers.") else name.split(".")[0]
            ] += 1
    return count


def lines(g: irgraph.Graph, *needles: str) -> list[str]:
    return [ln.strip() for ln in str(g).splitlines() if any(s in ln for s in needles)]


def fused(g: irgraph.Graph, pipeline: str) -> irgraph.Graph:
    out = run_pipeline(g, pipeline, check=True).graph
    assert check_equivalent(g, out) <= 1e-5
    # cached decode token by token equals the unfused graph's prefill
    ids = [[3, 1, 4, 1, 5]]
    np.testing.assert_allclose(
        irgraph.interpret(out, ids, decode=True), irgraph.interpret(g, ids), atol=1e-5
    )
    return out


def test_palm_block_fuses_inputs_and_outputs():
    g = parallel_lm(
        shared_norm=True, gated=True
    )  # q, k, v (multi-query), gate, up over one layer_norm
    assert linears_by_layer(g) == {"layers.0": 7, "layers.1": 7, "lm_head": 1}
    out = fused(g, "fuse-parallel-attention")
    assert linears_by_layer(out) == {"layers.0": 2, "layers.1": 2, "lm_head": 1}
    assert lines(out, "@layers.0.", "%branches =", "= split(%in_proj)") == [
        "param @layers.0.ln.weight: f32[32]",
        "param @layers.0.ln.bias: f32[32]",
        "param @layers.0.in_proj.weight: f32[176, 32]",
        "param @layers.0.out_proj.weight: f32[32, 96]",
        "%0: f32[batch, seq, 32] = layer_norm(%x, @layers.0.ln.weight, @layers.0.ln.bias)",
        "%in_proj: f32[batch, seq, 176] = linear(%0, @layers.0.in_proj.weight)",
        "%q: f32[batch, seq, 32], %k: f32[batch, seq, 8], %v: f32[batch, seq, 8], %gate: "
        "f32[batch, seq, 64], %up: f32[batch, seq, 64] = split(%in_proj) "
        "{axis=-1, sizes=[32, 8, 8, 64, 64]}",
        "%out_proj: f32[batch, seq, 32] = linear(%branches, @layers.0.out_proj.weight)",
    ]
    assert lines(out, "= concat(", "= add(")[:2] == [
        "%branches: f32[batch, seq, 96] = concat(%3, %4) {axis=-1}",
        "%x_1: f32[batch, seq, 32] = add(%x, %out_proj)",  # the two residual adds became one
    ]
    np.testing.assert_array_equal(
        out.weight("layers.0.in_proj.weight")[32:40], g.weight("layers.0.attn.k.weight")
    )
    np.testing.assert_array_equal(
        out.weight("layers.0.out_proj.weight")[:, 32:], g.weight("layers.0.mlp.down.weight")
    )
    assert (
        "layers.0.attn.q.weight" not in out.weights and "layers.0.attn.q.weight" not in out.params
    )


def test_codegen_style_block_with_biases_and_fused_qkv():
    g = parallel_lm(
        shared_norm=True, fused_qkv=True, gated=False, bias=True
    )  # qkv, up, all with biases
    out = fused(g, "fuse-parallel-attention")
    assert linears_by_layer(out) == {"layers.0": 2, "layers.1": 2, "lm_head": 1}
    bias = out.weight("layers.0.out_proj.bias")
    np.testing.assert_allclose(
        bias, g.weight("layers.0.attn.o.bias") + g.weight("layers.0.mlp.down.bias"), rtol=1e-6
    )
    np.testing.assert_array_equal(
        out.weight("layers.0.in_proj.bias")[48:], g.weight("layers.0.mlp.up.bias")
    )


def test_gpt_neox_merges_no_differently_normalised_inputs():
    g = parallel_lm(shared_norm=False, fused_qkv=True, gated=False, bias=True)
    out = fused(g, "fuse-parallel-attention")
    # the projections over LN1 and LN2 are untouched; only the residual branches' projections join
    assert lines(out, "= linear(%0", "= linear(%1,") == [
        "%qkv: f32[batch, seq, 48] = linear(%0, @layers.0.attn.qkv.weight, "
        "@layers.0.attn.qkv.bias)",
        "%up: f32[batch, seq, 64] = linear(%1, @layers.0.mlp.up.weight, @layers.0.mlp.up.bias)",
    ]
    assert linears_by_layer(out) == {"layers.0": 3, "layers.1": 3, "lm_head": 1}
    reasons = [e.reason for e in explain(find_rules("parallel-input-projection")[0], g)]
    assert reasons[:2] == [
        "only attention projections read this norm: the MLP has its own norm (a sequential or "
        "two-norm block); fuse-qkv merges q/k/v",
        "only MLP projections read this norm: the attention has its own norm (a sequential or "
        "two-norm block); fuse-gate-up merges a gated MLP's gate/up",
    ]
    # merging inputs only (no output merge) leaves NeoX exactly as it was
    assert not run_pipeline(g, "fuse-parallel-attention(merge_outputs=false)").modified


def test_llama_fuse_qkv_and_gate_up():
    g = tiny_llama()
    assert linears_by_layer(g) == {"layers.0": 7, "layers.1": 7, "lm_head": 1}
    assert not run_pipeline(g, "fuse-parallel-attention").modified  # sequential: nothing to merge
    out = fused(g, "fuse-qkv,fuse-gate-up")
    assert linears_by_layer(out) == {"layers.0": 4, "layers.1": 4, "lm_head": 1}
    assert lines(out, "= linear(%0,", "= split(%qkv)", "= split(%gate_up)", "glu(")[:4] == [
        "%qkv: f32[batch, seq, 64] = linear(%0, @layers.0.qkv.weight)",
        "%1: f32[batch, seq, 32], %2: f32[batch, seq, 16], %3: f32[batch, seq, 16] = "
        "split(%qkv) {axis=-1, sizes=[32, 16, 16]}",
        "%10: f32[batch, seq, 48], %11: f32[batch, seq, 48] = split(%gate_up) "
        "{axis=-1, sizes=[48, 48]}",
        '%12: f32[batch, seq, 48] = glu(%10, %11) {act="silu"}',
    ]
    again = run_pipeline(out, "fuse-qkv,fuse-gate-up")
    assert not again.modified
    assert [e.reason for e in explain(find_rules("fuse-qkv")[0], out)] == [
        "q, k and v already come from one linear"
    ] * 2


GATE_UP = """graph "mlp" {
  input %x: f32[batch, seq, 4]
  param @gate.weight: f32[6, 4]
  param @gate.bias: f32[6]
  param @up.weight: f32[6, 4]
  param @down.weight: f32[4, 6]
  %g: f32[batch, seq, 6] = linear(%x, @gate.weight, @gate.bias)
  %u: f32[batch, seq, 6] = linear(%x, @up.weight)
  %a: f32[batch, seq, 6] = gelu(%g)
  %m: f32[batch, seq, 6] = mul(%a, %u)
  %y: f32[batch, seq, 4] = linear(%m, @down.weight)
  output y = %y
}
"""


def test_fuse_gate_up_spelled_out_gate_with_one_bias():
    g = irgraph.parse(GATE_UP)
    rng = np.random.default_rng(1)
    g.weights = WeightStore.from_arrays(
        {n: rng.standard_normal(v.type.shape).astype(np.float32) for n, v in g.params.items()}
    )
    out = run_pipeline(g, "fuse-gate-up", check=True).graph
    body = [ln.strip() for ln in str(out).splitlines()[1:-1]]
    assert body == [
        "input %x: f32[batch, seq, 4]",
        "param @down.weight: f32[4, 6]",
        "param @gate_up.weight: f32[12, 4]",
        "param @gate_up.bias: f32[12]",
        "%gate_up: f32[batch, seq, 12] = linear(%x, @gate_up.weight, @gate_up.bias)",
        "%g: f32[batch, seq, 6], %u: f32[batch, seq, 6] = split(%gate_up) {axis=-1, sizes=[6, 6]}",
        "%a: f32[batch, seq, 6] = gelu(%g)",
        "%m: f32[batch, seq, 6] = mul(%a, %u)",
        "%y: f32[batch, seq, 4] = linear(%m, @down.weight)",
        "output y = %y",
    ]
    np.testing.assert_array_equal(
        out.weight("gate_up.bias")[6:], np.zeros(6, np.float32)
    )  # up had no bias
    assert irgraph.parse(str(out)) is not None  # the result round-trips through text


def test_structure_only_and_quantized_graphs():
    g = parallel_lm(shared_norm=True)
    g.weights = None
    out = run_pipeline(g, "fuse-parallel-attention").graph
    assert out.weights is None and out.params["layers.1.in_proj.weight"].type == irgraph.parse_type(
        "f32[176, 32]"
    )
    quantized = irgraph.parse(GATE_UP.replace("@up.weight: f32[6, 4]", "@up.weight: i8[6, 4]"))
    assert not run_pipeline(quantized, "fuse-gate-up").modified
    (e,) = explain(find_rules("fuse-gate-up")[0], quantized)
    assert e.reason == "the weight @up.weight is quantized (i8); fuse before quantizing"


@pytest.mark.parametrize("spec", ["bits=4, group=8", "bits=8, group=0, sym=false"])
def test_quantized_projections_fuse_by_stacking_their_stored_rows(spec):
    """q/k/v and gate/up quantized alike stack their data, scales and zero points row-wise:
    every per-row group stays as it was, so the fused graph computes the same numbers."""
    from irgraph import lm

    q = run_pipeline(tiny_llama(), f"quantize({spec})").graph
    out = run_pipeline(q, "fuse-qkv,fuse-gate-up").graph
    assert sum(n.op == "linear" for n in out.nodes) == sum(n.op == "linear" for n in q.nodes) - 6
    fused = out.params["layers.0.qkv.weight"].type
    assert fused.quant == q.params["layers.0.q.weight"].type.quant and fused.shape[0] == 64
    parts = [q.stored(f"layers.0.{p}.weight") for p in ("q", "k", "v")]
    for suffix, array in out.stored("layers.0.qkv.weight").items():
        np.testing.assert_array_equal(array, np.concatenate([p[suffix] for p in parts]))
    ids = np.array([[1, 2, 3, 4, 5]])
    np.testing.assert_allclose(lm.interpret(out, ids), lm.interpret(q, ids), rtol=1e-6, atol=1e-6)
    mixed = run_pipeline(tiny_llama(), 'quantize(bits=4, group=8, skip="layers.0.k.weight")')
    (e,) = [x for x in explain(find_rules("fuse-qkv")[0], mixed.graph) if x.reason]
    assert "differ in dtype" in e.reason


@pytest.mark.parametrize(
    "pipeline",
    [
        "fuse-qkv,fuse-gate-up,fuse-parallel-attention",
        "fuse-parallel-attention,fuse-qkv,fuse-gate-up",
    ],
)
def test_fusions_compose_in_any_order(pipeline):
    g = parallel_lm(shared_norm=True)
    out = fused(g, pipeline + ",canonicalize,cse,dce")
    assert linears_by_layer(out) == {"layers.0": 2, "layers.1": 2, "lm_head": 1}
