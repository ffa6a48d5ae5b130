"""dce, cse, constant-fold, canonicalize: IR text in, IR text out, numbers vs the interpreter."""

from __future__ import annotations

import numpy as np

import irgraph
from irgraph.passes import check_equivalent, explain, find_rules, run_pipeline
from irgraph.weights import WeightStore

HEADER = """graph "t" {
  input %x: f32[batch, seq, 4]
  param @w: f32[4, 4]
  param @s: f32[4]
"""


def graph(body: str, with_weights: bool = True) -> irgraph.Graph:
    g = irgraph.parse(HEADER + body + "}\n")
    if with_weights:
        rng = np.random.default_rng(0)
        g.weights = WeightStore.from_arrays(
            {
                "w": rng.standard_normal((4, 4)).astype(np.float32),
                "s": rng.standard_normal(4).astype(np.float32),
            }
        )
    return g


def body_lines(g: irgraph.Graph) -> list[str]:
    return [
        line.strip() for line in str(g).splitlines() if line.startswith("  %") or "output" in line
    ]


def run(g: irgraph.Graph, pipeline: str) -> irgraph.Graph:
    out = run_pipeline(g, pipeline, check=True).graph
    check_equivalent(g, out)  # the pass manager checked this too; keep the test honest on its own
    return out


def test_dce_removes_dead_nodes_and_params():
    g = graph("""  %a: f32[batch, seq, 4] = linear(%x, @w)
  %dead: f32[batch, seq, 4] = mul(%x, @s)
  output y = %a
""")
    out = run(g, "dce")
    assert body_lines(out) == ["%a: f32[batch, seq, 4] = linear(%x, @w)", "output y = %a"]
    assert list(out.params) == ["w"] and list(out.weights) == ["w"]
    assert run_pipeline(out, "dce").records[0].modified is False


def test_cse_merges_identical_chains():
    g = graph("""  %a: f32[batch, seq, 4] = linear(%x, @w)
  %b: f32[batch, seq, 4] = linear(%x, @w)
  %c: f32[batch, seq, 4] = silu(%a)
  %d: f32[batch, seq, 4] = silu(%b)
  %e: f32[batch, seq, 4] = gelu(%a) {approximate="tanh"}
  %f: f32[batch, seq, 4] = gelu(%a)
  %y: f32[batch, seq, 4] = add(%c, %d)
  %z: f32[batch, seq, 4] = add(%e, %f)
  output y = %y
  output z = %z
""")
    out = run(g, "cse")
    assert body_lines(out) == [
        "%a: f32[batch, seq, 4] = linear(%x, @w)",
        "%c: f32[batch, seq, 4] = silu(%a)",
        '%e: f32[batch, seq, 4] = gelu(%a) {approximate="tanh"}',  # different attrs: kept apart
        "%f: f32[batch, seq, 4] = gelu(%a)",
        "%y: f32[batch, seq, 4] = add(%c, %c)",
        "%z: f32[batch, seq, 4] = add(%e, %f)",
        "output y = %y",
        "output z = %z",
    ]


def test_constant_fold_precomputes_weight_only_nodes():
    g = graph("""  %wt: f32[4, 4] = transpose(@w) {perm=[1, 0]}
  %ws: f32[4, 4] = mul(%wt, @s)
  %y: f32[batch, seq, 4] = linear(%x, %ws)
  output y = %y
""")
    out = run(g, "constant-fold")
    assert body_lines(out) == ["%y: f32[batch, seq, 4] = linear(%x, @w_1.folded)", "output y = %y"]
    np.testing.assert_array_equal(
        out.weight("w_1.folded"), np.asarray(g.weight("w")).T * g.weight("s")
    )
    assert list(out.params) == ["w_1.folded"]


def test_constant_fold_respects_size_limit_and_structure_only_graphs():
    body = """  %wt: f32[4, 4] = transpose(@w) {perm=[1, 0]}
  %y: f32[batch, seq, 4] = linear(%x, %wt)
  output y = %y
"""
    assert not run_pipeline(graph(body), "constant-fold(max_elements=8)").modified
    assert not run_pipeline(graph(body, with_weights=False), "constant-fold").modified


def test_canonicalize_table():
    g = graph("""  %r1: f32[batch, seq, 2, 2] = reshape(%x) {shape=[0, 0, 2, 2]}
  %r2: f32[batch, seq, 4] = reshape(%r1) {shape=[0, 0, 4]}
  %t1: f32[batch, 4, seq] = transpose(%r2) {perm=[0, 2, 1]}
  %t2: f32[batch, seq, 4] = transpose(%t1) {perm=[0, 2, 1]}
  %c: f32[batch, seq, 4] = cast(%t2) {dtype="f32"}
  %s: f32[batch, seq, 4] = scale(%c) {factor=1.0}
  %n: f32[batch, seq, 4] = neg(%s)
  %nn: f32[batch, seq, 4] = neg(%n)
  %k: f32[batch, seq, 4] = concat(%nn) {axis=2}
  %y: f32[batch, seq, 4] = linear(%k, @w)
  %h: f32[batch, seq, 2] = slice(%y) {axis=2, start=0, end=2}
  %y2: f32[batch, seq, 2] = slice(%h) {axis=2, start=0}
  output y = %y2
""")
    out = run(g, "canonicalize")
    assert body_lines(out) == [
        "%y: f32[batch, seq, 4] = linear(%x, @w)",
        "%h: f32[batch, seq, 2] = slice(%y) {axis=2, start=0, end=2}",
        "output y = %h",
    ]


def test_canonicalize_keeps_reshape_chain_when_a_zero_copies_a_changed_dim():
    g = graph("""  %r1: f32[batch, seq, 1, 4] = reshape(%x) {shape=[0, 0, 1, 4]}
  %r2: f32[batch, seq, 1, 2, 2] = reshape(%r1) {shape=[0, 0, 0, 2, 2]}
  output y = %r2
""")
    assert not run_pipeline(g, "canonicalize").modified
    first, second = explain(find_rules("reshape-reshape")[0], g)
    assert str(first) == (
        "reshape-reshape @ node reshape #0 (-> %r1): no: input 0 of reshape: "
        "expected the result of reshape, found a graph input"
    )
    assert str(second) == (
        "reshape-reshape @ node reshape #1 (-> %r2): no: the outer reshape copies dim 2 (0), "
        "which the inner reshape changed"
    )
    g2 = graph("""  %r1: f32[batch, seq, 1, 4] = reshape(%x) {shape=[0, 0, 1, 4]}
  %r2: f32[batch, seq, 2, 2] = reshape(%r1) {shape=[0, 0, 2, 2]}
  output y = %r2
""")
    assert body_lines(run(g2, "canonicalize")) == [
        "%r2: f32[batch, seq, 2, 2] = reshape(%x) {shape=[0, 0, 2, 2]}",
        "output y = %r2",
    ]
