"""W8A8 in the IR (issue 13): int8 activations per token on linears, the interpreter's numerics
(known answers worked by hand from irgraph/quant.py's docstring), and quantize(method=w8a8)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import irgraph
from irgraph import GraphBuilder, IRError, lm
from irgraph.cli import main
from irgraph.errors import PassError
from irgraph.interpreter import run
from irgraph.parser import parse
from irgraph.passes import run_pipeline
from irgraph.quant import SCALES, linear_i8_token, quantize_tokens
from tests.helpers.handbuilt import VOCAB, tiny_llama


def test_per_token_scales_ties_and_a_zero_row():
    x = np.array(
        [
            [1.0, -2.0, 0.5, 127.0],  # sx = 1: 0.5 is a tie, to even 0
            [2.5, -1.5, -127.0, 3.5],  # sx = 1: ties 2.5 -> 2, -1.5 -> -2, 3.5 -> 4
            [0.0, 0.0, 0.0, 0.0],  # sx = 0: q = 0
            [-254.0, 1.0, 3.0, 0.0],  # sx = 2 (max |x| is negative): 1/2 -> 0, 3/2 -> 2
        ],
        np.float32,
    )
    q, sx = quantize_tokens(x)
    np.testing.assert_array_equal(sx, np.float32([1, 1, 0, 2]))
    np.testing.assert_array_equal(
        q, [[1, -2, 0, 127], [2, -2, -127, 4], [0, 0, 0, 0], [-127, 0, 2, 0]]
    )
    assert q.dtype == np.int8 and sx.dtype == np.float32


def test_scale_is_a_float32_division_per_row_of_every_leading_axis():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    q, sx = quantize_tokens(x)
    assert sx.shape == (2, 3)
    np.testing.assert_array_equal(sx, np.abs(x).max(-1) / np.float32(127))
    assert np.abs(q).max(-1).min() == 127  # each row's largest value maps to ±127
    # a row quantizes alone: the same row in another batch gives the same integers
    q1, s1 = quantize_tokens(x[1:, 2:])
    np.testing.assert_array_equal(q1[0, 0], q[1, 2])
    assert s1[0, 0] == sx[1, 2]


def _w8a8_linear(qw: np.ndarray, sw: np.ndarray, bias: np.ndarray | None = None):
    n, k = qw.shape
    b = GraphBuilder("w8a8")
    x = b.input("x", f"f32[rows, {k}]")
    w = b.param("w", f"i8<ch,sym,f16>[{n}, {k}]")
    arrays = {"w": qw.astype(np.int8), "w" + SCALES: sw.astype(np.float16).reshape(n, 1)}
    bv = None
    if bias is not None:
        bv = b.param("b", f"f32[{n}]")
        arrays["b"] = bias.astype(np.float32)
    b.output("y", b.linear(x, w, bv, act_quant="i8_token", hint="y"))
    return b.build(arrays)


def test_interpreter_multiplies_integers_and_rescales():
    qw = np.array([[1, -1, 2], [0, 127, -127]], np.int8)
    sw = np.array([0.5, 0.25], np.float32)  # f16-exact
    x = np.array([[254.0, -2.0, 3.0], [0.0, 0.0, 0.0], [1.0, 1.0, -0.5]], np.float32)
    g = _w8a8_linear(qw, sw, bias=np.array([10.0, -1.0], np.float32))
    y = run(g, {"x": x})["y"]
    # row 0: sx = 2, qx = [127, -1, 2] (3/2 = 1.5 ties to 2); row 1: all zero;
    # row 2: sx = 1/127, qx = [127, 127, -64] (-63.5 ties to -64)
    acc = np.array(
        [
            [127 + 1 + 4, -127 - 254],
            [0, 0],
            [127 - 127 - 128, 127 * 127 + 64 * 127],
        ],
        np.float64,
    )
    sx = np.array([2.0, 0.0, np.float32(1) / np.float32(127)], np.float64)
    want = (acc * sx[:, None] * sw[None, :] + [10.0, -1.0]).astype(np.float32)
    np.testing.assert_allclose(y, want, rtol=1e-7)
    np.testing.assert_array_equal(y[1], [10.0, -1.0])  # a zero row gives exactly the bias
    # the float product of the dequantized values differs: activations really are rounded
    w = qw * sw[:, None]
    assert np.abs(x @ w.T + [10.0, -1.0] - y).max() > 1e-3


def test_linear_i8_token_is_exact_for_f16_scales():
    rng = np.random.default_rng(1)
    qw = rng.integers(-127, 128, (16, 300)).astype(np.int8)
    sw = rng.uniform(1e-3, 1e-2, 16).astype(np.float16).astype(np.float32)
    x = (rng.standard_normal((5, 300)) * 4).astype(np.float32)
    qx, sx = quantize_tokens(x)
    exact = (qx.astype(np.int64) @ qw.astype(np.int64).T).astype(np.float64)
    want = (exact * sx[:, None] * sw[None, :]).astype(np.float32)
    got = linear_i8_token(x, (qw * sw[:, None]).astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=2e-7, atol=0)


def test_text_form_round_trips_and_the_verifier_wants_an_int8_channel_weight():
    g = _w8a8_linear(np.ones((2, 3), np.int8), np.ones(2, np.float32))
    text = str(g)
    assert 'linear(%x, @w) {act_quant="i8_token"}' in text
    assert "param @w: i8<ch,sym,f16>[2, 3]" in text
    assert str(parse(text)) == text
    for weight in ("f32[2, 3]", "i8<g2,sym,f16>[2, 3]", "i8<ch,asym,f16>[2, 3]"):
        bad = text.replace("i8<ch,sym,f16>[2, 3]", weight)
        with pytest.raises(IRError, match=r'act_quant="i8_token" needs an int8 per-channel'):
            parse(bad)
    with pytest.raises(IRError, match=r"attribute 'act_quant' of linear \(expected none \| i8"):
        parse(text.replace('"i8_token"', '"i4_token"'))


def _calibration() -> np.ndarray:
    return np.random.default_rng(3).integers(0, VOCAB, (2, 7))


def test_quantize_w8a8_marks_linears_and_keeps_the_head_float():
    g = tiny_llama()
    result = run_pipeline(g, "quantize(method=w8a8)")
    q = result.graph
    text = str(q)
    assert "param @layers.0.q.weight: i8<ch,sym,f16>[32, 32]" in text
    assert "param @lm_head.weight: f32[" in text  # the LM head stays float
    assert "param @embed.weight: f32[" in text
    linears = [n for n in q.nodes if n.op == "linear"]
    marked = [n for n in linears if n.attrs["act_quant"] == "i8_token"]
    assert len(marked) == len(linears) - 1
    assert "LM head @lm_head.weight stays float" in result.records[-1].note
    ids = _calibration()
    want = lm.interpret(g, ids)
    prefill, decode = lm.interpret(q, ids), lm.interpret(q, ids, decode=True)
    # per-token scales: cached decode quantizes each token as prefill does
    np.testing.assert_allclose(decode, prefill, rtol=1e-4, atol=1e-4)
    err = np.abs(prefill - want).max() / np.abs(want).max()
    assert 1e-4 < err < 0.05  # int8 rounding shows, and stays small


def test_quantize_w8a8_scale_dtype_and_bad_options():
    q = run_pipeline(tiny_llama(), "quantize(method=w8a8, scale_dtype=f32)").graph
    assert str(q.params["layers.0.up.weight"].type).startswith("i8<ch,sym,f32>")
    for option in ("bits=8", "group=0", "sym=false", "grid=4", "damp=0.1"):
        name = option.split("=")[0]
        with pytest.raises(PassError, match=f"option.s. {name} of pass quantize are not used by"):
            run_pipeline(tiny_llama(), f"quantize(method=w8a8, {option})")
    with pytest.raises(PassError, match=r"weight @\S+ is already quantized \(i8<ch,sym,f32>\)"):
        run_pipeline(q, "quantize(method=w8a8)")


def test_cli_opt_then_inspect_shows_int8_activations(tmp_path):
    irgraph.save(tiny_llama(), tmp_path / "f")
    r = CliRunner().invoke(
        main,
        ["opt", str(tmp_path / "f"), "--passes", "quantize(method=w8a8)", "-o", f"{tmp_path}/q"],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    assert 'act_quant="i8_token"' in r.output
    assert "int8 activations per token (dynamic): 14 linears" in r.output
    q = irgraph.load(tmp_path / "q")
    ids = _calibration()
    np.testing.assert_array_equal(
        lm.interpret(q, ids),
        lm.interpret(run_pipeline(tiny_llama(), "quantize(method=w8a8)").graph, ids),
    )
