"""prune (issue 17): known-answer masks, Wanda vs magnitude, SparseGPT's reconstruction, OWL's
allocation, the sparsity record (irgraph/sparsity.py) and what reads it, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import irgraph
from irgraph import lm, sparsity
from irgraph.cli import main
from irgraph.errors import IRError, PassError
from irgraph.passes import PassContext, run_pipeline
from irgraph.passes.prune import masks, sparsegpt, wanda_scores
from tests.helpers.handbuilt import VOCAB, tiny_llama


def _calibration(n: int = 2, seq: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [rng.integers(0, VOCAB, (2, seq)) for _ in range(n)]


def _correlated(rows: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((rows, 4)) @ rng.standard_normal((4, k))
    return (latent + 0.1 * rng.standard_normal((rows, k))).astype(np.float32)


# -- masks -------------------------------------------------------------------------------------


def test_row_mask_prunes_an_exact_count_per_row_ties_earliest_first():
    scores = np.array(
        [
            [4.0, 1.0, 3.0, 2.0, 5.0],
            [1.0, 1.0, 1.0, 1.0, 1.0],  # all tied: the first two go
            [0.0, 9.0, 0.0, 9.0, 0.0],
        ]
    )
    keep = masks.row_mask(scores, 0.5)  # int(5 * 0.5) = 2 per row
    want = [[1, 0, 1, 0, 1], [0, 0, 1, 1, 1], [0, 1, 0, 1, 1]]
    np.testing.assert_array_equal(keep, np.array(want, bool))
    np.testing.assert_array_equal(masks.row_mask(scores, 0.0), np.ones((3, 5), bool))


@pytest.mark.parametrize("n, m", [(2, 4), (4, 8), (1, 4)])
def test_nm_mask_keeps_the_n_largest_of_every_group(n, m):
    scores = np.random.default_rng(0).standard_normal((6, 32))
    keep = masks.nm_mask(scores, n, m)
    groups_keep = keep.reshape(6, -1, m)
    assert np.all(groups_keep.sum(axis=2) == n)
    groups = scores.reshape(6, -1, m)
    kept_min = np.where(groups_keep, groups, np.inf).min(axis=2)
    dropped_max = np.where(groups_keep, -np.inf, groups).max(axis=2)
    assert np.all(kept_min >= dropped_max)
    tied = masks.nm_mask(np.ones((1, 8)), 2, 4)
    np.testing.assert_array_equal(tied, [[0, 0, 1, 1, 0, 0, 1, 1]])


def test_wanda_equals_magnitude_when_all_input_norms_are_equal():
    w = np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)
    h = 3.0 * np.eye(16)
    for mask in (lambda s: masks.row_mask(s, 0.5), lambda s: masks.nm_mask(s, 2, 4)):
        np.testing.assert_array_equal(mask(wanda_scores(w, h)), mask(np.abs(w)))
    h[5, 5] = 100.0  # one loud input: Wanda keeps its column, magnitude does not care
    assert masks.row_mask(wanda_scores(w, h), 0.5)[:, 5].all()
    assert not masks.row_mask(np.abs(w), 0.5)[:, 5].all()


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_sparsegpt_lowers_layer_output_error_vs_plain_masking(nm):
    x = _correlated(512, 32)
    w = np.random.default_rng(2).standard_normal((24, 32)).astype(np.float32)
    h = 2 * x.T.astype(np.float64) @ x / len(x)
    pruned, damp = sparsegpt.prune_weight(w, h, 0.5, nm, block=8)
    scores = wanda_scores(w, h)
    plain = w * (masks.nm_mask(scores, *nm) if nm else masks.row_mask(scores, 0.5))

    def error(v: np.ndarray) -> float:
        return float(np.sum((x @ w.T - x @ v.T) ** 2))

    assert damp == 0.01 and pruned.dtype == np.float32
    assert np.count_nonzero(pruned == 0) == w.size // 2
    if nm:
        assert sparsity.violation(pruned, sparsity.Sparsity("2:4", 0.5)) is None
    assert error(pruned) < 0.5 * error(plain)


def test_sparsegpt_with_identity_hessian_is_the_blockwise_magnitude_mask():
    w = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    pruned, _ = sparsegpt.prune_weight(w, np.eye(16), 0.25, None, block=8)
    want = np.concatenate(
        [
            w[:, :8] * masks.flat_mask(np.abs(w[:, :8]), 0.25),
            w[:, 8:] * masks.flat_mask(np.abs(w[:, 8:]), 0.25),
        ],
        axis=1,
    )
    np.testing.assert_allclose(pruned, want, rtol=1e-6)


def test_owl_sparsities_average_to_s_within_lambda_outliers_least_sparse():
    ratios = [0.01, 0.02, 0.09, 0.03, 0.02]
    s = masks.owl_sparsities(ratios, 0.7, 0.08)
    assert np.mean(s) == pytest.approx(0.7)
    assert all(0.62 - 1e-12 <= v <= 0.78 + 1e-12 for v in s)
    assert np.argmin(s) == 2 and max(abs(v - 0.7) for v in s) == pytest.approx(0.08)
    assert masks.owl_sparsities([0.05, 0.05], 0.5, 0.1) == [0.5, 0.5]
    assert masks.outlier_ratio([np.array([1.0, 1.0, 1.0, 10.0])], 2.0) == 0.25


# -- the pass and its record --------------------------------------------------------------------


def _prune(spec: str, graph=None):
    ctx = PassContext(calibration=_calibration())
    return run_pipeline(graph or tiny_llama(), spec, ctx=ctx).graph


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["", "2:4", "4:8"])
def test_every_method_and_pattern_records_and_honours_its_pattern(method, pattern, tmp_path):
    opts = f'method={method}, pattern="{pattern}"' if pattern else f"method={method}"
    g = tiny_llama()
    p = _prune(f"prune({opts})", g)
    recs = sparsity.records(p)
    assert len(recs) == 14 and "embed.weight" not in recs and "lm_head.weight" not in recs
    assert {(r.pattern, r.fraction) for r in recs.values()} == {(pattern or "unstructured", 0.5)}
    assert sparsity.check(p) == []
    for name in recs:
        w = p.weight(name)
        if not pattern and method != "sparsegpt":  # exact per row; sparsegpt: per block
            assert np.all(np.count_nonzero(w == 0, axis=1) == w.shape[1] // 2)
        assert np.count_nonzero(w == 0) == w.size // 2
    np.testing.assert_array_equal(p.weight("lm_head.weight"), g.weight("lm_head.weight"))
    p.save(tmp_path / "p")
    back = irgraph.load(tmp_path / "p")
    assert sparsity.records(back) == recs and str(back) == str(p)


def test_group_layer_compares_over_the_whole_weight():
    g = tiny_llama()
    p = _prune("prune(sparsity=0.5, group=layer)", g)
    w, kept = g.weight("layers.0.up.weight"), p.weight("layers.0.up.weight")
    np.testing.assert_array_equal(kept, w * masks.flat_mask(np.abs(w), 0.5))
    per_row = (kept == 0).sum(axis=1)
    assert (kept == 0).sum() == w.size // 2 and per_row.min() < per_row.max()
    assert sparsity.records(p)["layers.0.up.weight"].fraction == 0.5
    row = _prune("prune(method=wanda, sparsity=0.5)", g).weight("layers.0.up.weight")
    layer = _prune("prune(method=wanda, sparsity=0.5, group=layer)", g).weight("layers.0.up.weight")
    assert np.all((row == 0).sum(axis=1) == w.shape[1] // 2) and not np.array_equal(row, layer)


def test_record_text_and_kept_weights_of_magnitude():
    g = tiny_llama()
    p = _prune('prune(pattern="2:4", skip="*.o.weight")', g)
    line = next(x for x in str(p).splitlines() if "meta sparsity" in x)
    assert line.startswith('  meta sparsity = [["layers.0.q.weight", "2:4", 0.5], ')
    assert "layers.0.o.weight" not in line
    w, kept = g.weight("layers.0.up.weight"), p.weight("layers.0.up.weight")
    np.testing.assert_array_equal(kept, w * masks.nm_mask(np.abs(w), 2, 4))


def test_owl_record_averages_to_s_per_block():
    p = _prune("prune(method=wanda, sparsity=0.6, allocation=owl, owl_lambda=0.1)")
    fr = {n: r.fraction for n, r in sparsity.records(p).items()}
    blocks = {n.split(".")[1]: f for n, f in fr.items()}
    assert len(set(blocks.values())) == 2 and np.mean(list(blocks.values())) == pytest.approx(0.6)
    assert max(abs(f - 0.6) for f in fr.values()) == pytest.approx(0.1)


def test_wanda_and_sparsegpt_beat_magnitude_on_their_calibration_data():
    g = tiny_llama()
    ids = np.concatenate(_calibration())
    dense = lm.interpret(g, ids)

    def err(spec: str) -> float:
        return float(np.mean((lm.interpret(_prune(spec, g), ids) - dense) ** 2))

    mag = err("prune(sparsity=0.6)")
    assert err("prune(method=wanda, sparsity=0.6)") < mag
    assert err("prune(method=sparsegpt, sparsity=0.6)") < mag


def test_quantizing_a_pruned_graph_keeps_its_zeros():
    ctx = PassContext(calibration=_calibration())
    p = _prune('prune(method=wanda, pattern="2:4")')
    for method in ("rtn", "gptq"):
        q = run_pipeline(p, f"quantize(method={method}, bits=4, group=8)", ctx=ctx).graph
        assert sparsity.records(q) == sparsity.records(p) and sparsity.check(q) == []


def test_inspect_shows_recorded_and_stored_sparsity(tmp_path):
    _prune('prune(pattern="2:4")').save(tmp_path / "p")
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "p"), "--no-text"])
    assert r.exit_code == 0, r.output
    assert "2:4                    14 weights  15,360 values  sparsity 50.0% recorded, 50.0%" in (
        r.output
    )


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        ("prune(sparsity=1.0)", "option 'sparsity' of pass prune.*0 <= sparsity < 1"),
        ("prune(sparsity=-0.1)", "option 'sparsity' of pass prune"),
        ('prune(pattern="4:4")', "N nonzeros in every M values.*0 < N < M.*N=4, M=4"),
        ('prune(pattern="5:4")', "0 < N < M"),
        ('prune(pattern="2-4")', "unstructured or N:M"),
        ('prune(pattern="2:5")', "pattern 2:5 groups 5 input columns of @layers.0.q.weight"),
        ('prune(pattern="2:4", sparsity=0.7)', "pattern=2:4 fixes the sparsity"),
        ('prune(pattern="2:4", allocation=owl)', "pattern=2:4 fixes the sparsity"),
        ("prune(allocation=owl, sparsity=0.95)", "owl layer sparsities"),
        ("prune(owl_lambda=0.1)", "owl_lambda of pass prune are not used"),
        ('prune(pattern="2:4", group=layer)', "pattern=2:4 groups columns within each row"),
        ("prune(method=sparsegpt, group=layer)", "group of pass prune are not used by"),
        ("prune(group=column)", "group"),
        ("prune(method=wanda, damp=0.1)", "damp of pass prune are not used by method=wanda"),
        ('prune(skip="nope.*")', "skip pattern 'nope.\\*' of pass prune matches no parameter"),
        ("prune,prune", "weight @layers.0.q.weight is already pruned"),
        ("quantize,prune", "weight @layers.0.q.weight is already quantized"),
    ],
)
def test_bad_options_are_one_clear_error(spec, message):
    with pytest.raises(PassError, match=message):
        _prune(spec)


def test_data_methods_need_calibration():
    with pytest.raises(PassError, match="pass prune needs calibration data"):
        run_pipeline(tiny_llama(), "prune(method=wanda)")


def test_malformed_record_is_an_ir_error():
    g = tiny_llama()
    g.meta["sparsity"] = [["layers.0.q.weight", "2:4", 1.5]]
    with pytest.raises(IRError, match="@layers.0.q.weight: sparsity fraction"):
        g.verify()
    g.meta["sparsity"] = [["gone.weight", "2:4", 0.5]]
    with pytest.raises(IRError, match="unknown parameter @gone.weight"):
        g.verify()


def test_cli_bad_pattern_is_one_line_and_writes_nothing(tmp_path):
    irgraph.save(tiny_llama(), tmp_path / "llama")
    out = tmp_path / "out"
    args = ["opt", str(tmp_path / "llama"), "--passes", 'prune(pattern="2:5")', "-o", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "Traceback" not in r.output and not out.exists()
    assert "pattern 2:5 groups 5 input columns" in r.output
