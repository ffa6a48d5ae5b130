"""`--calibration` on `irgraph opt` / `compile` (issue 13): windows of text as token ids, and
the errors for missing, empty or too-short calibration text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from irgraph.cli import main
from irgraph.cli.calibration import Calibration
from irgraph.serialize import load

TEXT = "def f(x):\n    return x * 2\n" * 20


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calib") / "llama"
    r = CliRunner().invoke(main, ["zoo", "build", "llama", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def _corpus(tmp_path: Path) -> Path:
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    (tmp_path / "corpus" / "a.py").write_text(TEXT)
    (tmp_path / "corpus" / "sub" / "b.txt").write_text(TEXT.upper())
    (tmp_path / "corpus" / "blob.bin").write_bytes(b"\0\1\2" * 100)  # not text: skipped
    return tmp_path / "corpus"


def test_windows_are_seeded_byte_slices_of_the_text_in_batches(tmp_path):
    corpus = _corpus(tmp_path)
    stream = (TEXT + TEXT.upper()).encode()  # files in path order: a.py, sub/b.txt
    batches = Calibration((str(corpus),), samples=10, seq=16, seed=3).batches(None, 256)
    assert [b.shape for b in batches] == [(8, 16), (2, 16)]
    assert all(b.dtype == np.int64 for b in batches)
    for row in np.concatenate(batches):
        assert bytes(row.astype(np.uint8)) in stream
    again = Calibration((str(corpus),), samples=10, seq=16, seed=3).batches(None, 256)
    other = Calibration((str(corpus),), samples=10, seq=16, seed=4).batches(None, 256)
    assert np.array_equal(np.concatenate(again), np.concatenate(batches))
    assert not np.array_equal(np.concatenate(other), np.concatenate(batches))


def _opt(model: Path, out: Path, *args: str):
    return CliRunner().invoke(main, ["opt", str(model), "-o", str(out), *args])


def test_opt_gptq_with_calibration_writes_a_quantized_graph(model, tmp_path):
    corpus = _corpus(tmp_path)
    r = _opt(
        model,
        tmp_path / "q",
        "--passes",
        "quantize(method=gptq, bits=4, group=32)",
        *("--calibration", str(corpus / "a.py"), "--calibration", str(corpus / "sub")),
        *("--calibration-samples", "3", "--calibration-seq", "16", "--calibration-seed", "1"),
    )
    assert r.exit_code == 0, r.output
    q = load(tmp_path / "q")
    assert sum(v.type.quant is not None for v in q.params.values()) >= 8


@pytest.mark.parametrize(
    "args, message",
    [
        (["--passes", "quantize(method=gptq)"], "needs calibration data (--calibration PATH"),
        (
            ["--passes", "quantize(method=gptq)", "--calibration", "EMPTY"],
            "--calibration EMPTY: the calibration path has no text",
        ),
        (
            ["--passes", "cse", "--calibration", "CORPUS", "--calibration-seq", "100000"],
            "the calibration text is shorter than one window (expected >= 100000 tokens",
        ),
        (["--calibration", "CORPUS"], "--passes"),
    ],
)
def test_calibration_errors_are_one_line_and_write_nothing(model, tmp_path, args, message):
    corpus = _corpus(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("")
    paths = {"EMPTY": str(tmp_path / "empty"), "CORPUS": str(corpus)}
    r = _opt(model, tmp_path / "q", *[paths.get(a, a) for a in args])
    assert r.exit_code != 0
    assert message in r.output.replace(str(tmp_path / "empty"), "EMPTY")
    assert "Traceback" not in r.output and not (tmp_path / "q").exists()
