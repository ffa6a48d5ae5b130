"""The pattern / check / rewrite facility: matching, reasons, the Rewriter's guarantees."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph
from irgraph import PassError
from irgraph.passes.graphs import GraphIndex, common_prefix, fresh_param_name
from irgraph.passes.rewrite import Candidate, Rewriter, TreeRule, apply_rules, explain, op, var
from irgraph.weights import WeightStore

TEXT = """graph "t" {
  input %x: f32[2, 3]
  param @w: f32[3, 3]
  %a: f32[2, 3] = neg(%x)
  %b: f32[2, 3] = neg(%a)
  %c: f32[2, 3] = neg(%b)
  %d: f32[2, 3] = neg(%c)
  %e: f32[2, 3] = linear(%d, @w)
  %f: f32[2, 3] = neg(%e)
  output y = %f
}
"""

NEG_NEG = TreeRule("neg-neg", op("neg", op("neg", var("x"))), rewrite=lambda rw, m: m.x)


def test_tree_rule_explains_every_candidate():
    g = irgraph.parse(TEXT)
    assert [str(e) for e in explain(NEG_NEG, g)] == [
        "neg-neg @ node neg #0 (-> %a): no: input 0 of neg: expected the result of neg, found a "
        "graph input",
        "neg-neg @ node neg #1 (-> %b): fires",
        "neg-neg @ node neg #2 (-> %c): fires",
        "neg-neg @ node neg #3 (-> %d): fires",
        "neg-neg @ node neg #5 (-> %f): no: input 0 of neg: expected neg, found linear",
    ]


def test_apply_rules_reaches_a_fixpoint_without_conflicts():
    g = irgraph.parse(TEXT)
    out, fired = apply_rules(g, [NEG_NEG])
    assert fired == 2
    assert [ln.strip() for ln in str(out).splitlines() if ": f32" in ln and " = " in ln] == [
        "%e: f32[2, 3] = linear(%x, @w)",
        "%f: f32[2, 3] = neg(%e)",
    ]


def test_check_blocks_the_rewrite_and_says_why():
    rule = TreeRule(
        "neg-neg-of-input",
        op("neg", op("neg", var("x"))),
        check=lambda m: None if m.x.hint == "x" else f"%{m.x.hint} is not the graph input",
        rewrite=lambda rw, m: m.x,
    )
    g = irgraph.parse(TEXT)
    assert [e.reason for e in explain(rule, g) if e.fired or "not the graph input" in e.reason] == [
        "",
        "%a is not the graph input",
        "%b is not the graph input",
    ]
    out, fired = apply_rules(g, [rule])
    # the first rewrite makes %d = neg(neg(%x)), which the next sweep rewrites too
    assert fired == 2 and [n.op for n in out.nodes] == ["linear", "neg"]


def test_rewriter_rejects_ill_typed_replacements_and_nodes():
    g = irgraph.parse(TEXT)
    rw = Rewriter(g).at(g.nodes[4])
    with pytest.raises(PassError, match="replaced a value by one of another type"):
        rw.replace(g.nodes[4].outputs[0], g.params["w"])
    with pytest.raises(
        PassError, match="rewrite built an ill-typed matmul: matmul inner dims differ"
    ):
        rw.emit("matmul", g.inputs["x"], g.inputs["x"])


def test_rewriter_params_need_arrays_when_the_graph_has_weights():
    g = irgraph.parse(TEXT)
    g.weights = WeightStore.from_arrays({"w": np.eye(3, dtype=np.float32)})
    rw = Rewriter(g)
    with pytest.raises(PassError, match="new param @w_1 needs an array"):
        rw.param("w", irgraph.parse_type("f32[3]"))


def test_rewriter_detects_cycles():
    g = irgraph.parse(TEXT)
    rw = Rewriter(g).at(g.nodes[0])
    # make %a read %f: a cycle through every node
    loop = rw.emit("neg", g.nodes[5].outputs[0])
    rw.replace(g.nodes[0].outputs[0], loop)
    with pytest.raises(PassError, match="the rewritten graph has a cycle"):
        rw.finish()


def test_name_helpers():
    assert common_prefix(["layers.0.attn.q.weight", "layers.0.mlp.up.weight"]) == "layers.0."
    assert common_prefix(["a.weight", "b.weight"]) == ""
    g = irgraph.parse(TEXT)
    assert fresh_param_name(g, "w") == "w_1" and fresh_param_name(g, "v.weight") == "v.weight"
    index = GraphIndex(g)
    assert index.depends_on(g.outputs["y"], g.inputs["x"]) and not index.depends_on(
        g.inputs["x"], g.outputs["y"]
    )
    assert isinstance(Candidate("here", ()), Candidate)
