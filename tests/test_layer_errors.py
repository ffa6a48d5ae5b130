"""`--check` of an approximate pass (issue 13): per-layer and logits error on the calibration
data, checked against hand computations from the interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from irgraph import lm
from irgraph.cli import main
from irgraph.passes import PassContext, run_pipeline
from irgraph.passes.layer_errors import layer_errors, layer_points
from tests.helpers.handbuilt import VOCAB, tiny_llama


def _batches(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, size=(2, 12), dtype=np.int64) for _ in range(2)]


def _rel(before: list[np.ndarray], after: list[np.ndarray]) -> float:
    diff = sum(float(np.sum(np.square(a.astype(np.float64) - b))) for a, b in zip(after, before))
    ref = sum(float(np.sum(np.square(b.astype(np.float64)))) for b in before)
    return float(np.sqrt(diff / ref))


def test_points_are_every_norm_input_in_graph_order():
    names = list(layer_points(tiny_llama()))
    assert names == [
        "layers.0.attn_norm.weight",
        "layers.0.mlp_norm.weight",
        "layers.1.attn_norm.weight",
        "layers.1.mlp_norm.weight",
        "norm.weight",
    ]


def test_errors_equal_a_hand_computation_and_are_zero_for_the_same_graph():
    g = tiny_llama()
    batches = _batches()
    same = layer_errors(g, g, batches)
    assert all(err == 0 for _, err in same.layers) and same.logits == same.logits_max == 0
    q = run_pipeline(g, "quantize(bits=3, group=8)").graph
    got = layer_errors(g, q, batches)
    logits = _rel(
        [lm.interpret(g, ids) for ids in batches], [lm.interpret(q, ids) for ids in batches]
    )
    assert got.logits == pytest.approx(logits, rel=1e-6)
    # the first point is the embedding's output: the table's rounding error at those ids
    table, table_q = g.weight("embed.weight"), q.weight("embed.weight")
    first = _rel([table[ids] for ids in batches], [table_q[ids] for ids in batches])
    assert got.layers[0] == ("layers.0.attn_norm.weight", pytest.approx(first, rel=1e-6))
    assert all(err > 0 for _, err in got.layers)
    finer = layer_errors(g, run_pipeline(g, "quantize(bits=8, group=8)").graph, batches)
    assert all(f < c / 4 for (_, f), (_, c) in zip(finer.layers, got.layers))
    assert finer.logits < got.logits / 4


def test_awq_points_stay_comparable_although_norm_weights_are_scaled():
    g = tiny_llama()
    ctx = PassContext(calibration=_batches(1))
    awq = run_pipeline(g, "quantize(method=awq, bits=8, group=8)", ctx=ctx).graph
    norm = "layers.0.attn_norm.weight"
    assert not np.array_equal(awq.weight(norm), g.weight(norm))  # AWQ folded a scale into it
    report = layer_errors(g, awq, _batches())
    assert max(err for _, err in report.layers) < 0.02 and report.logits < 0.02


def test_check_prints_layer_errors_on_the_calibration_data(tmp_path: Path):
    r = CliRunner().invoke(main, ["zoo", "build", "llama", "-o", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    (tmp_path / "c.txt").write_text("def f(x):\n    return x * 2\n" * 20)
    args = ["--calibration", str(tmp_path / "c.txt"), "--calibration-samples", "4"]
    args += ["--calibration-seq", "16", "--check", "-o", str(tmp_path / "q")]
    passes = "quantize(method=gptq, bits=4, group=32)"
    r = CliRunner().invoke(main, ["opt", str(tmp_path / "m"), "--passes", passes, *args])
    assert r.exit_code == 0, r.output
    assert "error on calibration data, 64 tokens (1 batches of 4 x 16)" in r.output
    lines = [line.split() for line in r.output.splitlines() if line.startswith("      layers.")]
    assert len(lines) >= 2 and all(float(parts[-1]) > 0 for parts in lines)
    assert "      logits: " in r.output
