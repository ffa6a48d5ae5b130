"""Rewrites that were in lowerings, as passes: fuse-qkv/fuse-gate-up max_width, fuse-add-norm,
last-position-logits. IR text in, IR text and numbers out."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph
from irgraph import PassError
from irgraph.lm import LOGITS_LAST
from irgraph.passes import explain, find_rules, run_pipeline
from irgraph.passes.last_position import entry_graphs
from irgraph.weights import WeightStore

GATE_UP = """graph "mlp" {
  input %x: f32[batch, seq, 4]
  param @gate.weight: f32[6, 4]
  param @up.weight: f32[6, 4]
  param @down.weight: f32[4, 6]
  %g: f32[batch, seq, 6] = linear(%x, @gate.weight)
  %u: f32[batch, seq, 6] = linear(%x, @up.weight)
  %m: f32[batch, seq, 6] = glu(%g, %u) {act="silu"}
  %y: f32[batch, seq, 4] = linear(%m, @down.weight)
  output y = %y
}
"""

ADD_NORM = """graph "block" {
  input %x: f32[batch, seq, 4]
  input %r: f32[batch, seq, 4]
  input %b: f32[4]
  param @n1.weight: f32[4]
  param @n2.weight: f32[4]
  %h: f32[batch, seq, 4] = add(%x, %r)
  %n: f32[batch, seq, 4] = rms_norm(%h, @n1.weight) {eps=1e-05}
  %o: f32[batch, seq, 4] = add(%n, %h)
  %c: f32[batch, seq, 4] = add(%o, %b)
  %m: f32[batch, seq, 4] = rms_norm(%c, @n2.weight)
  output y = %m
  output h = %h
}
"""

HEAD = """graph "lm" {
  input %input_ids: i64[batch, seq]
  param @embed.weight: f32[16, 4]
  param @norm.weight: f32[4]
  param @head.weight: f32[16, 4]
  %e: f32[batch, seq, 4] = embedding(%input_ids, @embed.weight)
  %s: f32[batch, seq, 4] = softmax(%e) {axis=1}
  %n: f32[batch, seq, 4] = rms_norm(%s, @norm.weight)
  %l: f32[batch, seq, 16] = linear(%n, @head.weight)
  %logits: f32[batch, seq, 16] = scale(%l) {factor=0.5}
  output logits = %logits
}
"""


def with_weights(text: str) -> irgraph.Graph:
    g = irgraph.parse(text)
    rng = np.random.default_rng(0)
    g.weights = WeightStore.from_arrays(
        {n: rng.standard_normal(v.type.shape).astype(np.float32) for n, v in g.params.items()}
    )
    return g


def body(g: irgraph.Graph) -> list[str]:
    return [ln.strip() for ln in str(g).splitlines()[1:-1] if not ln.strip().startswith("meta")]


@pytest.mark.parametrize(
    "max_width,fires", [(0, True), (3, True), (2, False)]
)  # gate + up: 12 output rows over 4 input features
def test_max_width_bounds_the_fused_rows(max_width, fires):
    g = with_weights(GATE_UP)
    out = run_pipeline(g, f"fuse-gate-up(max_width={max_width})", check=True).graph
    assert [n.op for n in out.nodes].count("linear") == (2 if fires else 3)
    (why,) = explain(find_rules("fuse-gate-up")[0].__class__(max_width), g)
    assert why.fired is fires
    if not fires:
        assert why.reason == (
            "the fused weight would have 12 output rows, over max_width=2 x 4 input features"
        )


def test_max_width_is_checked():
    with pytest.raises(PassError, match="max_width"):
        run_pipeline(with_weights(GATE_UP), "fuse-qkv(max_width=-1)")


def test_fuse_add_norm_rewrites_add_and_norm_of_the_sum():
    g = with_weights(ADD_NORM)
    out = run_pipeline(g, "fuse-add-norm", check=True).graph
    assert body(out)[5:] == [
        "%h: f32[batch, seq, 4], %n: f32[batch, seq, 4] = add_rms_norm(%x, %r, @n1.weight) "
        "{eps=1e-05}",
        "%o: f32[batch, seq, 4] = add(%n, %h)",
        "%c: f32[batch, seq, 4] = add(%o, %b)",
        "%m: f32[batch, seq, 4] = rms_norm(%c, @n2.weight)",
        "output y = %m",
        "output h = %h",
    ]
    feeds = {
        "x": np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32),
        "r": np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32),
        "b": np.ones(4, np.float32),
    }
    want, got = irgraph.run(g, feeds), irgraph.run(out, feeds)
    for name in ("y", "h"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
    reasons = [str(e) for e in explain(find_rules("fuse-add-norm")[0], g)]
    assert reasons[1].endswith(
        "no: the add broadcasts (f32[batch, seq, 4] + f32[4] -> f32[batch, seq, 4])"
    )


def test_last_position_logits_applies_the_head_to_the_last_row():
    g = with_weights(HEAD)
    out = run_pipeline(g, "last-position-logits", check=True).graph
    assert body(out)[8:] == [
        "%last_hidden: f32[batch, 1, 4] = slice(%s) {axis=1, start=-1}",
        "%n_last: f32[batch, 1, 4] = rms_norm(%last_hidden, @norm.weight)",
        "%l_last: f32[batch, 1, 16] = linear(%n_last, @head.weight)",
        "%logits_last: f32[batch, 1, 16] = scale(%l_last) {factor=0.5}",
        "%logits: f32[batch, seq, 16] = scale(%l) {factor=0.5}",
        "output logits = %logits",
        "output logits_last = %logits_last",
    ]
    ids = np.array([[1, 5, 7, 2], [3, 3, 0, 9]])
    res = irgraph.run(out, {"input_ids": ids})
    assert res[LOGITS_LAST].shape == (2, 1, 16)
    np.testing.assert_allclose(res[LOGITS_LAST], res["logits"][:, -1:], rtol=1e-6, atol=1e-6)
    entries = entry_graphs(out)
    assert [list(e.outputs) for e in entries.values()] == [["logits"], [LOGITS_LAST]]
    assert all(set(e.params) == set(out.params) for e in entries.values())
    assert "linear" not in [n.op for n in entries["forward_last"].nodes[:4]]  # full head pruned
    again = run_pipeline(out, "last-position-logits").graph  # idempotent
    assert list(again.outputs) == ["logits", LOGITS_LAST]
    (why,) = explain(find_rules("last-position-logits")[0], out)
    assert why.reason == "the graph already has 'logits_last'"


def test_last_position_logits_stops_at_ops_that_mix_positions():
    g = with_weights(
        HEAD.replace(
            "%logits: f32[batch, seq, 16] = scale(%l) {factor=0.5}",
            "%logits: f32[batch, seq, 16] = softmax(%l) {axis=1}",
        )
    )
    (why,) = explain(find_rules("last-position-logits")[0], g)
    assert why.reason == "the logits come from a softmax that mixes positions"
