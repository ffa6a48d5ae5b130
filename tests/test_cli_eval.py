"""`irgraph eval` (issue 13 item 3): held-out bits per byte and perplexity, checked by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from irgraph import lm
from irgraph.cli import main
from irgraph.passes import run_pipeline
from irgraph.serialize import load, save
from tests.helpers.handbuilt import tiny_llama

TEXT = b"import os\nprint(os.getcwd())\n# caf\xc3\xa9\n" * 3  # 105 bytes, one 2-byte character


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "llama"
    r = CliRunner().invoke(main, ["zoo", "build", "llama", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def _eval(path: Path, corpus: Path, *args: str) -> dict:
    r = CliRunner().invoke(main, ["eval", str(path), "--corpus", str(corpus), "--json", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _by_hand(graph, stream: np.ndarray, seq: int) -> float:
    """Bits per byte: windows of seq + 1 bytes every seq bytes, -log softmax of each target."""
    nats, count = 0.0, 0
    for start in range(0, len(stream) - seq, seq):
        window = stream[start : start + seq + 1]
        logits = lm.interpret(graph, window[None, :-1])[0].astype(np.float64)
        for pos, target in enumerate(window[1:]):
            row = logits[pos]
            nats += math.log(sum(math.exp(v - row.max()) for v in row)) + row.max() - row[target]
            count += 1
    return nats / count / math.log(2)


@pytest.mark.parametrize("quantized", [False, True])
def test_eval_equals_a_hand_computation_from_the_logits(model, tmp_path, quantized):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.py").write_bytes(TEXT)
    graph = load(model)
    path = model
    if quantized:  # a quantized graph is scored with its own (dequantized) numerics
        graph = run_pipeline(graph, "quantize(bits=3, group=16)").graph
        path = tmp_path / "q"
        save(graph, path)
    got = _eval(path, tmp_path / "corpus", "--seq", "16", "--batch-size", "3")
    stream = np.frombuffer(TEXT, np.uint8).astype(np.int64)
    assert (got["tokens"], got["windows"], got["tokenizer"]) == (96, 6, "bytes")
    assert got["bits_per_byte"] == pytest.approx(_by_hand(graph, stream, 16), rel=1e-6)
    assert got["perplexity"] == pytest.approx(math.exp(got["loss"]), rel=1e-9)
    assert got["loss"] == pytest.approx(got["bits_per_byte"] * math.log(2), rel=1e-9)


def test_max_tokens_spreads_windows_and_short_text_is_an_error(model, tmp_path):
    (tmp_path / "a.txt").write_bytes(TEXT)
    got = _eval(model, tmp_path / "a.txt", "--seq", "8", "--max-tokens", "24")
    assert (got["tokens"], got["windows"]) == (24, 3)
    r = CliRunner().invoke(main, ["eval", str(model), "--corpus", str(tmp_path), "--seq", "500"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "the text is shorter than one window (expected >= 501 tokens" in r.output


def test_a_model_without_tokenizer_and_a_small_vocabulary_is_refused(tmp_path):
    save(tiny_llama(), tmp_path / "g")  # vocabulary 64, no tokenizer.json
    (tmp_path / "a.txt").write_bytes(TEXT)
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "g"), "--corpus", str(tmp_path / "a.txt")])
    assert r.exit_code == 1
    assert "no tokenizer.json and a vocabulary smaller than a byte" in r.output


def test_an_artifact_is_scored_by_its_own_session(model, tmp_path):
    (tmp_path / "a.txt").write_bytes(TEXT)
    art = tmp_path / "art"
    r = CliRunner().invoke(main, ["compile", str(model), "--target", "onnx", "-o", str(art)])
    assert r.exit_code == 0, r.output
    got = _eval(art, tmp_path / "a.txt", "--seq", "16")
    want = _eval(model, tmp_path / "a.txt", "--seq", "16")
    assert got["tokens"] == want["tokens"] == 96
    assert got["bits_per_byte"] == pytest.approx(want["bits_per_byte"], rel=1e-5)


def test_eval_and_calibration_read_text_without_loading_torch(model, tmp_path):
    """Text reading is core (irgraph.text): scoring an ONNX artifact and calibrating GPTQ in the
    interpreter never import torch (only `train` needs it)."""
    (tmp_path / "a.txt").write_bytes(TEXT)
    art = tmp_path / "art"
    r = CliRunner().invoke(main, ["compile", str(model), "--target", "onnx", "-o", str(art)])
    assert r.exit_code == 0, r.output
    script = f"""
import sys
from click.testing import CliRunner
from irgraph.cli import main
r = CliRunner().invoke(main, ["eval", {str(art)!r}, "--corpus", {str(tmp_path / "a.txt")!r},
    "--seq", "16"])
assert r.exit_code == 0, r.output
r = CliRunner().invoke(main, ["opt", {str(model)!r}, "--passes", "quantize(method=gptq)",
    "--calibration", {str(tmp_path / "a.txt")!r}, "--calibration-samples", "2",
    "--calibration-seq", "16", "-o", {str(tmp_path / "q")!r}])
assert r.exit_code == 0, r.output
print(sorted(m for m in sys.modules if m.split(".")[0] == "torch"))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_paired_difference_is_the_mean_and_standard_error_of_window_differences():
    from irgraph.heldout import Score, paired_difference, score_windows

    rng = np.random.default_rng(0)
    windows = rng.integers(0, 8, (6, 5))
    logits_a = rng.standard_normal((6, 4, 8))
    logits_b = logits_a + 0.3 * rng.standard_normal((6, 4, 8))
    it_a, it_b = iter(np.split(logits_a, 3)), iter(np.split(logits_b, 3))
    a = score_windows(lambda ids: next(it_a), windows, bytes_per_token=1.0, batch=2)
    b = score_windows(lambda ids: next(it_b), windows, bytes_per_token=1.0, batch=2)
    assert len(a.window_nats) == 6 and sum(a.window_nats) == pytest.approx(a.nats)
    mean, se = paired_difference(a, b)
    assert mean == pytest.approx(a.bits_per_byte - b.bits_per_byte)
    d = (np.array(a.window_nats) - np.array(b.window_nats)) / (4 * math.log(2))
    assert se == pytest.approx(d.std(ddof=1) / math.sqrt(6)) and se > 0
    with pytest.raises(ValueError, match="same >= 2 windows"):
        paired_difference(a, Score(1.0, 4, 1, 1.0, (1.0,)))
