"""Weights that do not match the graph are refused (issue 12): another dtype than declared
(unless cast on request), tensors the graph does not use, overlapping byte spans, NaN/Inf
(unless --allow-nonfinite) for run, generate and compile."""

from __future__ import annotations

import json
import struct

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner

import irgraph
import irgraph.runtimes
from irgraph import finite
from irgraph.cli import main
from irgraph.errors import ConfigError
from irgraph.serialize import WEIGHTS_FILE, load
from irgraph.weights import WeightStore, save_safetensors
from tests.helpers.handbuilt import tiny_llama

IDS = [[3, 1, 4, 1, 5]]


@pytest.fixture(scope="module")
def graph():
    return tiny_llama()


def saved(graph, folder, **changes):
    """`graph` saved to `folder`, with its weights file rewritten as `changes` say
    (name -> array, or None to drop a tensor)."""
    irgraph.save(graph, folder)
    store = WeightStore.open(folder / WEIGHTS_FILE)
    arrays = {n: np.array(store[n]) for n in store}
    for name, array in changes.items():
        if array is None:
            del arrays[name]
        else:
            arrays[name] = array
    del store
    save_safetensors(arrays, folder / WEIGHTS_FILE)
    return folder


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("dtype", [np.float16, np.int64])
def test_a_weight_in_another_dtype_is_refused_unless_cast(graph, tmp_path, dtype):
    norm = np.asarray(graph.weight("norm.weight"))
    stored = norm.astype(dtype)
    folder = saved(graph, tmp_path / "g", **{"norm.weight": stored})
    with pytest.raises(
        ConfigError,
        match=rf"weight 'norm.weight' is stored in another dtype .*--cast-weights.*"
        rf"expected f32, got {np.dtype(dtype)}",
    ):
        load(folder)
    cast = load(folder, cast_weights=True)
    assert cast.weight("norm.weight").dtype == np.float32
    expected = graph.weights and dict(graph.weights)
    expected["norm.weight"] = stored.astype(np.float32)
    reference = tiny_llama()
    reference.weights = WeightStore.from_arrays(expected)
    np.testing.assert_allclose(irgraph.interpret(cast, IDS), irgraph.interpret(reference, IDS))
    result = cli("run", folder, "--ids", "1,2")
    assert result.exit_code == 1 and "--cast-weights" in result.output
    assert cli("run", folder, "--ids", "1,2", "--cast-weights").exit_code == 0


def test_a_float_weight_is_never_cast_to_an_integer_dtype(tmp_path):
    text = 'graph "g" {\n  input %ids: i64[2]\n  param @idx: i64[2]\n'
    text += "  %0: i64[2] = add(%ids, @idx)\n  output out = %0\n}\n"
    (tmp_path / "graph.irg").write_text(text)
    save_safetensors({"idx": np.array([0.5, 1.0], np.float32)}, tmp_path / WEIGHTS_FILE)
    with pytest.raises(ConfigError, match="another dtype than the graph declares \\(expected i64"):
        load(tmp_path, cast_weights=True)


def test_a_tensor_the_graph_does_not_use_is_refused(graph, tmp_path):
    folder = saved(graph, tmp_path / "g", **{"stray.weight": np.zeros(3, np.float32)})
    with pytest.raises(
        ConfigError, match=r"1 stored tensor\(s\) are not parameters .*'stray.weight'"
    ):
        load(folder)


def test_overlapping_byte_spans_are_refused(tmp_path):
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    blob = json.dumps(header).encode()
    (tmp_path / "w.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(24))
    with pytest.raises(
        ConfigError, match=r"tensors 'a' and 'b' overlap .*start at or after byte 16"
    ):
        WeightStore.open(tmp_path / "w.safetensors")
    header["b"]["data_offsets"] = [16, 32]  # adjacent is fine
    blob = json.dumps(header).encode()
    (tmp_path / "w.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(32))
    assert sorted(WeightStore.open(tmp_path / "w.safetensors")) == ["a", "b"]


def test_first_nonfinite_reads_in_chunks(monkeypatch):
    monkeypatch.setattr(finite, "CHUNK", 7)
    a = np.ones((5, 6), np.float32)
    assert finite.first_nonfinite(a) is None
    a[3, 2] = -np.inf  # flat index 20, in the third chunk
    assert finite.first_nonfinite(a) == 20
    for dtype, largest in ((np.float16, 65504.0), (ml_dtypes.bfloat16, 3.0e38)):
        b = np.full(10, largest, dtype)  # finite however large: 16-bit types test exponent bits
        assert finite.first_nonfinite(b) is None
        b[8], b[9] = -np.inf, np.nan
        assert finite.first_nonfinite(b) == 8


def test_nonfinite_weights_are_refused_by_run_generate_and_compile(graph, tmp_path):
    bad = np.array(graph.weight("layers.1.q.weight"))
    bad[2, 5] = np.nan
    folder = saved(graph, tmp_path / "g", **{"layers.1.q.weight": bad})
    message = "weight 'layers.1.q.weight' holds nan at flat index 69"
    with pytest.raises(ConfigError, match=message):
        irgraph.runtimes.open(folder)
    for verb in (
        ["run", folder, "--ids", "1,2"],
        ["generate", folder, "--prompt-ids", "1,2", "-n", "2"],
        ["compile", folder, "-o", tmp_path / "art"],
    ):
        result = cli(*verb)
        assert result.exit_code == 1 and message in result.output, result.output
        assert "--allow-nonfinite" in result.output
    assert not (tmp_path / "art").exists()
    result = cli("run", folder, "--ids", "1,2", "--allow-nonfinite", "--json")
    assert result.exit_code == 0, result.output
    assert np.isnan(json.loads(result.output)["logits"]).all()  # what the check protects from


def test_opt_cast_weights_saves_the_declared_dtype(graph, tmp_path):
    folder = saved(graph, tmp_path / "g", **{"norm.weight": np.ones(32, np.float16)})
    refused = cli("opt", folder, "--passes", "dce", "-o", tmp_path / "out")
    assert refused.exit_code == 1 and "--cast-weights" in refused.output
    result = cli("opt", folder, "--passes", "dce", "-o", tmp_path / "out", "--cast-weights")
    assert result.exit_code == 0, result.output
    assert load(tmp_path / "out").weights.shape_dtype("norm.weight")[1] == np.float32
