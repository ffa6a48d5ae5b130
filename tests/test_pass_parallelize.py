"""parallelize-blocks: sequential pre-norm blocks become parallel ones (an architecture change)."""

from __future__ import annotations

import numpy as np

import irgraph
from irgraph.passes import explain, find_rules, run_pipeline
from tests.helpers.handbuilt import tiny_llama


def test_mlp_norm_reads_the_block_input_and_numbers_match_a_hand_edited_graph():
    g = tiny_llama()
    out = run_pipeline(g, "parallelize-blocks", allow_arch_change=True).graph
    # Independent expectation: edit the text form by hand so each MLP norm reads the block input.
    text = str(g)
    assert "%9: f32[batch, seq, 32] = rms_norm(%x_1, @layers.0.mlp_norm.weight)" in text
    edited = text.replace(
        "rms_norm(%x_1, @layers.0.mlp_norm", "rms_norm(%x, @layers.0.mlp_norm"
    ).replace("rms_norm(%x_3, @layers.1.mlp_norm", "rms_norm(%x_2, @layers.1.mlp_norm")
    expected = irgraph.parse(edited)
    expected.weights = g.weights
    ids = [[5, 7, 11, 2]]
    got = irgraph.interpret(out, ids)
    np.testing.assert_allclose(got, irgraph.interpret(expected, ids), atol=1e-6)
    np.testing.assert_allclose(irgraph.interpret(out, ids, decode=True), got, atol=1e-5)
    assert np.abs(got - irgraph.interpret(g, ids)).max() > 1e-2  # it is a different model
    assert [ln.strip() for ln in str(out).splitlines() if "mlp_norm" in ln and "=" in ln] == [
        "%9: f32[batch, seq, 32] = rms_norm(%x, @layers.0.mlp_norm.weight) {eps=1e-05}",
        "%23: f32[batch, seq, 32] = rms_norm(%x_2, @layers.1.mlp_norm.weight) {eps=1e-05}",
    ]


def test_share_norm_gives_the_palm_form_which_then_fuses():
    g = tiny_llama()
    result = run_pipeline(
        g,
        "parallelize-blocks(share_norm=true),fuse-parallel-attention,dce",
        allow_arch_change=True,
        check=True,
    )
    out = result.graph
    assert not any("mlp_norm" in p for p in out.params)
    linears = [n for n in out.nodes if n.op == "linear"]
    assert [n.inputs[1].param for n in linears] == [
        "layers.0.in_proj.weight",
        "layers.0.out_proj.weight",
        "layers.1.in_proj.weight",
        "layers.1.out_proj.weight",
        "lm_head.weight",
    ]
    assert result.records[1].max_error is not None and result.records[1].max_error <= 1e-5


def test_explains_why_norms_are_left_alone():
    g = run_pipeline(tiny_llama(), "parallelize-blocks", allow_arch_change=True).graph
    reasons = {e.reason for e in explain(find_rules("parallelize-blocks")[0], g)}
    assert reasons == {
        "the residual branch before this norm is not attention "
        "(e.g. the MLP before the next block or the final norm)"
    }
    assert not run_pipeline(g, "parallelize-blocks", allow_arch_change=True).modified
