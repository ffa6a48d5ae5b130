"""Quantized weight types (issue 13 item 1): text form, storage, the interpreter's numerics.

Known answers are worked by hand from the rules in irgraph/quant.py's docstring.
"""

from __future__ import annotations

import numpy as np
import pytest

from irgraph import GraphBuilder, IRError
from irgraph.dtypes import DType
from irgraph.interpreter import run
from irgraph.parser import parse
from irgraph.quant import (
    SCALES,
    ZEROS,
    QuantSpec,
    choose_scales,
    dequantize,
    pack,
    quantize,
    quantize_arrays,
    unpack,
)
from irgraph.serialize import load, save
from irgraph.types import parse_type

G2_SYM = QuantSpec(4, 2, True, DType.f32)


def roundtrip(x: np.ndarray, spec: QuantSpec) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    scales, zeros = choose_scales(x, spec)
    arrays = quantize_arrays(x, spec, scales, zeros)
    return dequantize(spec, x.shape, arrays), arrays


def test_known_answers_symmetric_both_signs_zero_group_and_ties():
    # scale = max|x| / 7 per group of 2; q = round-half-even(x / scale)
    x = np.array([[7.0, -3.5, 0.0, 0.0, -7.0, 2.5]], np.float32)
    scales, zeros = choose_scales(x, G2_SYM)
    assert zeros is None
    np.testing.assert_array_equal(scales, np.float32([[1.0, 0.0, 1.0]]))
    q = quantize(x, G2_SYM, scales)
    # -3.5 and 2.5 are ties: half to even gives -4 and 2; an all-zero group has scale 0 and q 0
    np.testing.assert_array_equal(q, [[7, -4, 0, 0, -7, 2]])
    w, _ = roundtrip(x, G2_SYM)
    np.testing.assert_array_equal(w, [[7, -4, 0, 0, -7, 2]])


def test_ties_round_half_to_even():
    spec = QuantSpec(8, 0, True, DType.f32)
    x = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5]], np.float32)  # scale exactly 1
    np.testing.assert_array_equal(
        quantize(x, spec, choose_scales(x, spec)[0]), [[127, 0, 2, 2, 0, -2]]
    )


def test_asymmetric_zero_points_and_a_group_of_one_value():
    spec = QuantSpec(4, 4, False, DType.f32)
    # one group [0, 1.5, 3, 15]: lo 0, hi 15, scale 1, z = round(-8 - 0) = -8; q = x + z
    x = np.array([[0.0, 1.5, 3.0, 15.0, 2.0, 2.0, 2.0, 2.0]], np.float32)
    scales, zeros = choose_scales(x, spec)
    np.testing.assert_array_equal(scales, np.float32([[1.0, 2.0 / 15]]))
    assert zeros is not None
    np.testing.assert_array_equal(zeros, [[-8, -8]])
    q = quantize(x, spec, scales, zeros)
    np.testing.assert_array_equal(q[0, :4], [-8, -6, -5, 7])  # 1.5 -> 2 (half to even)
    w, arrays = roundtrip(x, spec)
    assert set(arrays) == {"", SCALES, ZEROS}
    np.testing.assert_allclose(
        w, [[0, 2, 3, 15, 2, 2, 2, 2]], rtol=1e-6
    )  # a constant group is exact


def test_padded_last_group_dequantizes_the_padding_away():
    spec = QuantSpec(4, 4, True, DType.f16)
    x = np.array([[1.0, 2.0, 3.0, 4.0, -7.0, 7.0], [0.0] * 6], np.float32)  # K=6: 2 groups, 2 pad
    w, arrays = roundtrip(x, spec)
    assert arrays[""].shape == (2, 4) and arrays[SCALES].shape == (2, 2)
    assert arrays[SCALES].dtype == np.float16
    assert unpack(arrays[""], spec)[0, 6:].tolist() == [0, 0]  # padding holds the zero point
    # scale 4/7: 1 -> 1.75 -> 2, 2 -> 3.5 a tie -> 4 (half to even), 3 -> 5.25 -> 5, 4 -> 7
    np.testing.assert_allclose(w, [[8 / 7, 16 / 7, 20 / 7, 4, -7, 7], [0] * 6], rtol=1e-3)


def test_three_bits_range_and_nibble_order():
    spec = QuantSpec(3, 0, True, DType.f32)
    x = np.array([[3.0, -3.0, 1.0, -1.0, 2.0]], np.float32)  # odd K per channel: one pad nibble
    scales, _ = choose_scales(x, spec)
    q = quantize(x, spec, scales)
    assert q.shape == (1, 6) and q.min() >= -4 and q.max() <= 3
    data = pack(q, spec)
    assert data.tolist() == [[0xD3, 0xF1, 0x02]]  # low nibble first: 3 | -3<<4 (0xD)
    np.testing.assert_array_equal(unpack(data, spec), q)


def test_type_text_and_bytes():
    t = parse_type("i4<g32,sym,f16>[64, 96]")
    assert str(t) == "i4<g32,sym,f16>[64, 96]"
    assert t.nbytes() == 64 * 96 // 2 + 64 * 3 * 2
    assert str(parse_type("i4<b3,ch,asym,f32>[8, 7]")) == "i4<b3,ch,asym,f32>[8, 7]"
    assert parse_type("i8<ch,sym,f32>[8, 7]").nbytes() == 8 * 7 + 8 * 4
    with pytest.raises(IRError, match="stored in i4"):
        parse_type("i8<b4,g32,sym,f16>[8, 64]")
    with pytest.raises(IRError, match="needs a group"):
        parse_type("i4<sym,f16>[8, 64]")


def _graph(spec: QuantSpec, k: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((6, k)).astype(np.float32)
    table = rng.standard_normal((10, k)).astype(np.float32)
    arrays: dict[str, np.ndarray] = {}
    for name, x in (("w", w), ("table", table)):
        scales, zeros = choose_scales(x, spec)
        for suffix, a in quantize_arrays(x, spec, scales, zeros).items():
            arrays[name + suffix] = a
    b = GraphBuilder("q")
    ids = b.input("ids", "i64[batch, seq]")
    t = f"{spec.storage}<{spec}>"
    h = b.embedding(ids, b.param("table", f"{t}[10, {k}]"), hint="h")
    b.output("y", b.linear(h, b.param("w", f"{t}[6, {k}]"), hint="y"))
    return b.build(arrays), w, table


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec(4, 16, True, DType.f16),
        QuantSpec(8, 0, False, DType.f32),
        QuantSpec(3, 32, False, DType.f16),
    ],
)
def test_graph_roundtrips_and_runs_dequantized(spec, tmp_path):
    graph, w, table = _graph(spec)
    text = str(graph)
    assert f"param @w: {spec.storage}<{spec}>[6, 40]" in text
    assert str(parse(text)) == text
    ids = np.array([[1, 9, 0]])
    out = run(graph, {"ids": ids})["y"]
    wq, tq = graph.weight("w"), graph.weight("table")
    assert wq.dtype == np.float32 and wq.shape == (6, 40)
    np.testing.assert_allclose(out, tq[ids] @ wq.T, rtol=1e-6, atol=1e-6)
    err = np.abs(wq - w).max() / np.abs(w).max()
    assert 0 < err < (0.01 if spec.bits == 8 else 0.3)
    save(graph, tmp_path / "g")
    again = load(tmp_path / "g")
    assert str(again) == text
    np.testing.assert_array_equal(run(again, {"ids": ids})["y"], out)


def test_quantized_values_only_feed_weight_slots():
    text = """graph "bad" {
      input %x: f32[2, 4]
      param @w: i4<g32,sym,f16>[4, 32]
      %y: f32[2, 32] = matmul(%x, @w)
      output y = %y
    }"""
    with pytest.raises(IRError, match="quantized weight"):
        parse(text).verify()
