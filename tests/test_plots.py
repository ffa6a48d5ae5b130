"""Plots (issue 19): the decode speed race, bits per byte vs size, and train's loss curve.

matplotlib is the optional extra `irgraph[plot]`: with it the PNGs are drawn (and are not
blank); without it `irgraph train` writes everything else and says nothing about plots.
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from click.testing import CliRunner

from irgraph.cli import loss_plot, main
from tests.helpers.png import read_png

DECODE = {
    "dims": {"hidden_size": 768},
    "tokens": 128,
    "threads": 1,
    "results": {
        "irgraph-onnx": {"prefill_tps": 900.0, "decode_tps": 41.0},
        "irgraph-tvm-q4": {"prefill_tps": 700.0, "decode_tps": 60.0, "roofline_tps": 160.0},
        "genai-fp32": {"prefill_tps": 800.0, "decode_tps": 35.0},
        "roofline": {"prefill_tps": float("nan"), "decode_tps": 52.0},
    },
}


def ink(path):
    """(distinct colours, share of non-white pixels) of a PNG."""
    rgb = read_png(path)[..., :3].reshape(-1, 3)
    colours = len(np.unique(rgb, axis=0))
    return colours, float(np.mean(np.any(rgb < 250, axis=1)))


def test_speed_race_and_bits_per_byte_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from benchmarks.plots import bpb_vs_size, speed_race

    race = speed_race(json.loads(json.dumps(DECODE)), tmp_path / "decode.png")
    colours, share = ink(race)
    assert colours > 10 and 0.02 < share < 0.9
    rows = [
        {"label": "fp32", "size_mib": 360.0, "bits_per_byte": 1.80, "group": "fp32"},
        {"label": "rtn w4 g32", "size_mib": 60.0, "bits_per_byte": 1.95, "group": "rtn"},
        {"label": "gptq w4 g32", "size_mib": 60.0, "bits_per_byte": 1.84, "group": "gptq"},
        {"label": "gptq w3 g32", "size_mib": 48.0, "bits_per_byte": 1.90, "group": "gptq"},
    ]
    colours, share = ink(bpb_vs_size(rows, tmp_path / "q.png", "quantization"))
    assert colours > 10 and 0.02 < share < 0.9
    with pytest.raises(ValueError):
        bpb_vs_size([], tmp_path / "none.png")


def test_loss_curve_png_with_the_users_umask(tmp_path):
    pytest.importorskip("matplotlib")
    old = os.umask(0o022)
    try:
        path = loss_plot.write_loss_curve(
            tmp_path, [(s, 5.0 / s) for s in range(1, 40)], [(0, 5.5), (39, 0.2)], "run"
        )
    finally:
        os.umask(old)
    assert path == tmp_path / "loss.png" and stat.S_IMODE(path.stat().st_mode) == 0o644
    colours, share = ink(path)
    assert colours > 10 and share > 0.02
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]  # no temporary left


def test_train_writes_the_loss_curve_and_works_without_matplotlib(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    args = ["train", "llama-2", "--corpus", str(corpus), "--steps", "2", "--batch-size", "2"]
    args += ["--seq-len", "16", "--eval-tokens", "64", "--no-bf16"]
    monkeypatch.setattr(loss_plot, "have_matplotlib", lambda: False)
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "plain")])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "plain" / "loss.png").exists()
    assert "loss curve" not in result.output and (tmp_path / "plain" / "graph.irg").is_file()
    pytest.importorskip("matplotlib")
    monkeypatch.undo()
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "plot")])
    assert result.exit_code == 0, result.output
    assert f"loss curve: {tmp_path / 'plot' / 'loss.png'}" in result.output
    assert ink(tmp_path / "plot" / "loss.png")[1] > 0.02
