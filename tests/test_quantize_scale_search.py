"""quantize's `mse` (passes/quantize/scale_search.py): each group's range shrunk to the factor
with the lowest Σ|w - q(w)|^2.4, never worse than min/max, a known answer on an outlier, and
the option through rtn, gptq and the pass."""

from __future__ import annotations

import numpy as np
import pytest

from irgraph.dtypes import DType
from irgraph.errors import PassError
from irgraph.passes import run_pipeline
from irgraph.passes.manager import parse_pipeline
from irgraph.passes.quantize import gptq, rtn
from irgraph.passes.quantize.scale_search import NORM, search_scales
from irgraph.quant import SCALES, QuantSpec, choose_scales, dequantize, quantize_arrays
from tests.helpers.handbuilt import tiny_llama

F16 = DType.f16


def _group_error(w: np.ndarray, spec: QuantSpec, scales, zeros) -> np.ndarray:
    """Σ|w - dequantize(q)|^2.4 per group [N, blocks], through the IR's own dequantize."""
    n, k = w.shape
    d = dequantize(spec, w.shape, quantize_arrays(w, spec, scales, zeros)) - w
    g, nb = spec.group_size(k), spec.blocks(k)
    padded = np.zeros((n, nb * g), np.float64)
    padded[:, :k] = np.abs(d)
    return np.sum(padded.reshape(n, nb, g) ** NORM, axis=-1)


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec(3, 32, True, F16),
        QuantSpec(4, 32, True, F16),
        QuantSpec(4, 6, False, F16),  # K = 40: the last group of 6 is padded
        QuantSpec(3, 0, True, DType.f32),
        QuantSpec(8, 16, True, F16),
    ],
    ids=str,
)
def test_search_is_never_worse_than_min_max_on_any_group(spec):
    rng = np.random.default_rng(0)
    w = (rng.standard_t(3, (16, 40)) * 0.05).astype(np.float32)  # heavy tails, as trained weights
    w[3, :] = 0.0  # an all-zero row stays exact
    plain = _group_error(w, spec, *choose_scales(w, spec))
    searched = _group_error(w, spec, *search_scales(w, spec))
    assert np.all(searched <= plain)
    assert spec.bits == 8 or searched.sum() < 0.9 * plain.sum()  # heavy tails: it pays
    np.testing.assert_array_equal(searched[3], 0.0)


def test_an_outlier_shrinks_its_group_only_to_the_brute_force_best_factor():
    spec = QuantSpec(3, 32, True, F16)
    rng = np.random.default_rng(1)
    w = rng.uniform(-0.1, 0.1, (2, 64)).astype(np.float32)
    w[0, 5] = 0.5  # 5x the rest: min/max's step 1/6 rounds most of the group to 0
    w[1, 32:] = np.resize(np.arange(-3, 4) * 0.25, 32)  # on the grid of step 0.25: error 0
    scales, _ = search_scales(w, spec)
    plain, _ = choose_scales(w, spec)
    # brute force over the reference's candidates p = 1 - i/100, i < 80, first lowest kept
    errors = [
        _group_error(w[:1, :32], spec, *choose_scales(w[:1, :32], spec, 1 - i / 100))[0, 0]
        for i in range(80)
    ]
    p = 1 - int(np.argmin(errors)) / 100
    assert p < 0.9 and scales[0, 0] == np.float16(np.float32(0.5) * np.float32(p) / 3)
    assert scales[0, 0] < plain[0, 0] and min(errors) < 0.8 * errors[0]
    assert scales[1, 1] == plain[1, 1] == 0.25  # min/max is exact: kept (ties keep p = 1)


@pytest.mark.parametrize("act_order", [True, False])
def test_gptq_with_identity_hessian_and_mse_is_rtn_with_mse(act_order):
    spec = QuantSpec(3, 8, True, F16)
    w = np.random.default_rng(2).standard_t(3, (6, 24)).astype(np.float32)
    got, _ = gptq.quantize_weight(w, np.eye(24), spec, gptq.Options(act_order=act_order, mse=True))
    want = rtn.quantize_weight(w, spec, mse=True)
    for suffix in want:
        np.testing.assert_array_equal(got[suffix], want[suffix])
    assert not np.array_equal(want[SCALES], rtn.quantize_weight(w, spec)[SCALES])


def test_the_pass_option_changes_scales_and_is_refused_by_awq():
    g = tiny_llama()
    plain = run_pipeline(g, "quantize(bits=3, group=16)").graph
    (pass_,) = parse_pipeline("quantize(bits=3, group=16, mse=true)")
    assert str(pass_) == "quantize(bits=3, group=16, mse=true)"  # the text round-trips
    q = run_pipeline(g, [pass_]).graph
    name = "layers.0.up.weight"
    assert str(q.params[name].type) == str(plain.params[name].type) == "i4<b3,g16,sym,f16>[48, 32]"
    searched, minmax = q.stored(name)[SCALES], plain.stored(name)[SCALES]
    assert np.all(searched <= minmax) and np.any(searched < minmax)
    with pytest.raises(
        PassError, match="option.s. mse of pass quantize are not used by method=awq"
    ):
        run_pipeline(g, "quantize(method=awq, mse=true)")
