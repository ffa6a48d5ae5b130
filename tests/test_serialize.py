"""A graph on disk: save/load round trip with memory-mapped weights, atomic saves, and
clean errors for corrupt safetensors files.
"""

from __future__ import annotations

import json
import struct

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import irgraph
from irgraph import ConfigError, GraphBuilder, IRError
from irgraph.serialize import GRAPH_FILE, WEIGHTS_FILE, is_graph_dir
from irgraph.weights import WeightStore, save_safetensors
from tests.helpers.handbuilt import tiny_llama


def test_round_trip_text_weights_and_logits(tmp_path):
    graph = tiny_llama()
    irgraph.save(graph, tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [GRAPH_FILE, WEIGHTS_FILE]
    assert is_graph_dir(tmp_path / "g") and not is_graph_dir(tmp_path)
    loaded = irgraph.load(tmp_path / "g")
    assert str(loaded) == str(graph)
    for name in graph.params:
        w = loaded.weight(name)
        assert (
            isinstance(w, np.memmap) and w.mode == "r"
        )  # mapped from the file, not read into memory
        np.testing.assert_array_equal(w, graph.weight(name))
    ids = [[3, 1, 4, 1, 5]]
    np.testing.assert_array_equal(irgraph.interpret(loaded, ids), irgraph.interpret(graph, ids))


def test_graph_save_method_and_overwrite(tmp_path):
    graph = tiny_llama(seed=1)
    graph.save(str(tmp_path / "g"))
    irgraph.save(tiny_llama(seed=2), tmp_path / "g", overwrite=True)  # replaces the whole folder
    np.testing.assert_array_equal(
        irgraph.load(tmp_path / "g").weight("embed.weight"),
        tiny_llama(seed=2).weight("embed.weight"),
    )
    with pytest.raises(ConfigError, match="not empty .an irgraph output.; pass overwrite=True"):
        irgraph.save(graph, tmp_path / "g")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # no temp or .old folders left


def test_structure_only_graph_has_no_weights_file(tmp_path):
    graph = irgraph.parse(str(tiny_llama()))
    assert graph.weights is None
    irgraph.save(graph, tmp_path / "g")
    assert not (tmp_path / "g" / WEIGHTS_FILE).exists()
    assert irgraph.load(tmp_path / "g").weights is None


def unstorable_graph():
    b = GraphBuilder("bad")
    x = b.input("x", "f32[2]")
    b.output("y", b.add(x, b.param("p", "f32[2]")))
    return b.build({"p": np.zeros(2, np.complex64)})  # safetensors has no complex dtype


def test_failed_save_leaves_the_old_folder_untouched(tmp_path):
    irgraph.save(tiny_llama(), tmp_path / "g")
    before = {p.name: p.read_bytes() for p in (tmp_path / "g").iterdir()}
    with pytest.raises(ConfigError, match="cannot store 'p' as safetensors"):
        irgraph.save(unstorable_graph(), tmp_path / "g", overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "g").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


def test_failed_save_creates_nothing(tmp_path):
    with pytest.raises(ConfigError):
        irgraph.save(unstorable_graph(), tmp_path / "new")
    with pytest.raises(FileNotFoundError):
        irgraph.save(
            tiny_llama(),
            tmp_path / "new2",
            extra_files={"tokenizer.json": tmp_path / "missing.json"},
        )
    assert list(tmp_path.iterdir()) == []


def test_bf16_weights_round_trip_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4)).astype(ml_dtypes.bfloat16)
    b = GraphBuilder("bf16")
    x = b.input("x", "f32[batch, 4]")
    b.output("y", b.linear(x, b.param("w", "bf16[6, 4]")))
    irgraph.save(b.build({"w": w}), tmp_path / "g")
    loaded = irgraph.load(tmp_path / "g")
    got = loaded.weight("w")
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.view(np.uint16), w.view(np.uint16))
    # The same bytes as torch's bfloat16, read back by the safetensors library itself.
    theirs = safetensors.torch.load_file(tmp_path / "g" / WEIGHTS_FILE)["w"]
    np.testing.assert_array_equal(theirs.float().numpy(), w.astype(np.float32))
    xs = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(
        irgraph.run(loaded, {"x": xs})["y"], xs @ w.astype(np.float32).T, rtol=1e-6
    )


def test_files_from_the_safetensors_library_load(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, -2], np.int64)}
    safetensors.numpy.save_file(arrays, tmp_path / "x.safetensors", metadata={"format": "np"})
    store = WeightStore.open(tmp_path / "x.safetensors")
    assert sorted(store) == ["a", "b"]
    for k, v in arrays.items():
        np.testing.assert_array_equal(store[k], v)
    torch_file = tmp_path / "t.safetensors"
    safetensors.torch.save_file({"h": torch.arange(5, dtype=torch.bfloat16) / 3}, torch_file)
    np.testing.assert_array_equal(
        WeightStore.open(torch_file)["h"].astype(np.float32),
        (torch.arange(5, dtype=torch.bfloat16) / 3).float().numpy(),
    )


def test_our_files_load_in_the_safetensors_library(tmp_path):
    arrays = {
        "x": np.ones((3, 5), np.float16),
        "y": np.zeros((0, 2), np.float32),
        "z": np.array(7, np.int32),
    }
    save_safetensors(arrays, tmp_path / "w.safetensors", metadata={"who": "irgraph"})
    theirs = safetensors.numpy.load_file(tmp_path / "w.safetensors")
    for k, v in arrays.items():
        np.testing.assert_array_equal(theirs[k], v)
        np.testing.assert_array_equal(WeightStore.open(tmp_path / "w.safetensors")[k], v)


def header_file(path, header: dict, data: bytes = b"") -> None:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


@pytest.mark.parametrize(
    "corrupt,message",
    [
        (lambda p: p.write_bytes(b"\x01\x02"), "shorter than 8 bytes"),
        (lambda p: p.write_bytes(struct.pack("<Q", 2**40) + b"{}"), "implausible header length"),
        (lambda p: p.write_bytes(struct.pack("<Q", 5) + b"{nope"), "header is not JSON"),
        (
            lambda p: header_file(
                p, {"embed.weight": {"dtype": "C64", "shape": [64, 32], "data_offsets": [0, 8]}}
            ),
            "unsupported dtype",
        ),
        (
            lambda p: header_file(
                p,
                {"embed.weight": {"dtype": "F32", "shape": [64, 32], "data_offsets": [0, 8192]}},
                b"\0" * 100,
            ),
            "beyond the end of the file",
        ),
        (
            lambda p: header_file(
                p,
                {"embed.weight": {"dtype": "F32", "shape": [64, 32], "data_offsets": [0, 100]}},
                b"\0" * 8192,
            ),
            "data_offsets",
        ),
        (
            lambda p: header_file(
                p, {"embed.weight": {"dtype": "F32", "shape": [64, 32]}}, b"\0" * 8192
            ),
            "malformed entry",
        ),
        (lambda p: header_file(p, ["not", "a", "dict"]), "header is not a JSON object"),
    ],
)
def test_corrupt_weights_raise_config_error_naming_the_file(tmp_path, corrupt, message):
    irgraph.save(tiny_llama(), tmp_path / "g")
    weights = tmp_path / "g" / WEIGHTS_FILE
    corrupt(weights)
    with pytest.raises(ConfigError, match=message) as err:
        irgraph.load(tmp_path / "g")
    assert str(weights) in str(err.value)


def test_weights_that_do_not_match_the_graph(tmp_path):
    irgraph.save(tiny_llama(), tmp_path / "g")
    weights = tmp_path / "g" / WEIGHTS_FILE
    store = WeightStore.open(weights)
    arrays = {k: np.array(store[k]) for k in store if k != "norm.weight"}
    save_safetensors(arrays, weights)
    with pytest.raises(ConfigError, match="weight 'norm.weight' missing") as err:
        irgraph.load(tmp_path / "g")
    assert str(weights) in str(err.value)
    arrays["norm.weight"] = np.ones(31, np.float32)
    save_safetensors(arrays, weights)
    with pytest.raises(
        ConfigError,
        match=r"weight 'norm.weight' has the wrong shape \(expected \(32,\), got \(31,\)",
    ):
        irgraph.load(tmp_path / "g")


def test_bad_folders(tmp_path):
    with pytest.raises(ConfigError, match="no graph.irg") as err:
        irgraph.load(tmp_path)
    assert str(tmp_path) in str(err.value)
    (tmp_path / GRAPH_FILE).write_text(
        'graph "x" {\n  input %x: f32[2]\n  %y: f32[3] = neg(%x)\n}\n'
    )
    with pytest.raises(IRError, match="graph.irg: line 3") as err:
        irgraph.load(tmp_path)
