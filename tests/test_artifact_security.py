"""Artifacts are closed worlds: hostile manifests and folders are refused before anything loads.

Each case edits a copy of a tiny ONNX or tvm-llvm artifact (built once per module) and
asserts one RuntimeFailure naming the culprit, with the loaders (onnxruntime's
InferenceSession, TVM's load_module) never called. README "Trust model" says what this
protects against and what it does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import tvm

import irgraph.runtimes
from irgraph import lm
from irgraph.artifact import read_listed
from irgraph.codegen.onnx import compile_graph as compile_onnx
from irgraph.codegen.tvm import compile_graph as compile_tvm
from irgraph.errors import RuntimeFailure
from tests.helpers.handbuilt import tiny_llama

KINDS = ["onnx", "tvm"]
LOADER = {"onnx": "model", "tvm": "library"}  # the manifest key of the file each runtime loads
BIG = {"onnx": "model.onnx.data", "tvm": "weights.safetensors"}
IDS = [[1, 5, 9, 3]]


@pytest.fixture(scope="module")
def graph():
    return tiny_llama()


@pytest.fixture(scope="module")
def built(graph, tmp_path_factory):
    root = tmp_path_factory.mktemp("closed")
    return {
        "onnx": compile_onnx(graph, root / "onnx", default_passes=False),
        "tvm": compile_tvm(graph, root / "tvm", target="tvm-llvm", default_passes=False),
    }


@pytest.fixture(scope="module")
def reference(graph):
    return lm.interpret(graph, np.array(IDS))


@pytest.fixture
def loads(monkeypatch):
    """Paths the runtimes hand to their loaders, recorded (the real loader still runs)."""
    seen: list[str] = []
    real_session, real_module = onnxruntime.InferenceSession, tvm.runtime.load_module

    def session(path, *a, **kw):
        seen.append(str(path))
        return real_session(path, *a, **kw)

    def module(path, *a, **kw):
        seen.append(str(path))
        return real_module(path, *a, **kw)

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    monkeypatch.setattr(tvm.runtime, "load_module", module)
    return seen


def _copy(built, kind, tmp_path) -> Path:
    return Path(shutil.copytree(built[kind], tmp_path / kind))


def _edit(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _refused(folder: Path, match: str, loads: list[str], **kw) -> str:
    with pytest.raises(RuntimeFailure, match=match) as info:
        irgraph.runtimes.open(folder, **kw)
    message = str(info.value)
    assert "\n" not in message and loads == []
    return message


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


FILE_KEYS = [("onnx", "model"), ("onnx", "model_last"), ("tvm", "library"), ("tvm", "weights")]


@pytest.mark.parametrize(("kind", "key"), FILE_KEYS)
@pytest.mark.parametrize("name", ["../model.so", "/etc/passwd", "sub/model.so", "", 7, "x" * 300])
def test_a_loaded_file_must_be_a_plain_name(built, tmp_path, loads, kind, key, name):
    folder = _copy(built, kind, tmp_path)
    _edit(folder, lambda m: m[kind].__setitem__(key, name))
    message = _refused(folder, f"{kind}.{key} must name a file in the artifact", loads)
    assert repr(name)[:100] in message


@pytest.mark.parametrize(("kind", "key"), FILE_KEYS[::2])
def test_a_missing_file_key_is_named(built, tmp_path, loads, kind, key):
    folder = _copy(built, kind, tmp_path)
    _edit(folder, lambda m: m[kind].pop(key))
    _refused(folder, f"{kind}.{key} must name a file in the artifact", loads)


@pytest.mark.parametrize("kind", KINDS)
def test_a_files_entry_must_be_a_plain_name(built, tmp_path, loads, kind):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    folder = _copy(built, kind, tmp_path)
    _edit(folder, lambda m: m["files"].__setitem__("../outside.bin", _sha(outside)))
    _refused(folder, "files must name a file in the artifact folder", loads)


@pytest.mark.parametrize("kind", KINDS)
def test_a_symlink_out_of_the_folder_is_refused_without_showing_its_hash(
    built, tmp_path, loads, kind
):
    """The manifest even carries the outside file's true hash: the escape alone refuses it."""
    folder = _copy(built, kind, tmp_path)
    outside = tmp_path / "outside.bin"
    shutil.copyfile(folder / BIG[kind], outside)
    (folder / BIG[kind]).unlink()
    os.symlink(outside, folder / BIG[kind])
    message = _refused(folder, f"{BIG[kind]} resolves outside the artifact folder", loads)
    assert _sha(outside)[:16] not in message


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_the_manifest_does_not_list_is_not_loaded(built, tmp_path, loads, kind):
    folder = _copy(built, kind, tmp_path)
    evil = folder / "evil.bin"
    shutil.copyfile(folder / f"{'model.onnx' if kind == 'onnx' else 'model.so'}", evil)
    _refused(folder, "file evil.bin is not listed in the manifest", loads)
    _refused(folder, "file evil.bin is not listed in the manifest", loads, verify=False)
    _edit(folder, lambda m: m[kind].__setitem__(LOADER[kind], "evil.bin"))
    evil.unlink()  # named by the loader key but not in files
    _refused(folder, f"{kind}.{LOADER[kind]} names 'evil.bin', which the manifest's files", loads)


@pytest.mark.parametrize("kind", KINDS)
def test_a_changed_file_is_refused_without_showing_its_hash(built, tmp_path, loads, kind):
    folder = _copy(built, kind, tmp_path)
    with open(folder / BIG[kind], "r+b") as f:
        f.seek(64)
        f.write(b"\x01\x02\x03")
    message = _refused(folder, f"{BIG[kind]} does not match its sha256", loads)
    assert _sha(folder / BIG[kind])[:16] not in message


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_file_is_named(built, tmp_path, loads, kind):
    folder = _copy(built, kind, tmp_path)
    (folder / BIG[kind]).unlink()
    _refused(folder, f"file {BIG[kind]} is missing", loads)


@pytest.mark.parametrize("kind", KINDS)
def test_a_symlink_loop_or_a_folder_in_place_of_a_file_is_refused(built, tmp_path, loads, kind):
    folder = _copy(built, kind, tmp_path)
    (folder / BIG[kind]).unlink()
    os.symlink(BIG[kind], folder / BIG[kind])  # points at itself
    _refused(folder, f"file {BIG[kind]} cannot be", loads)
    (folder / BIG[kind]).unlink()
    (folder / BIG[kind]).mkdir()
    _refused(folder, f"file {BIG[kind]} is not a regular file", loads)


@pytest.mark.parametrize("kind", KINDS)
def test_a_manifest_outside_the_folder_is_refused(built, tmp_path, loads, kind):
    folder = _copy(built, kind, tmp_path)
    (folder / "manifest.json").rename(tmp_path / "manifest.json")
    os.symlink(tmp_path / "manifest.json", folder / "manifest.json")
    _refused(folder, "manifest.json resolves outside the artifact folder", loads)


@pytest.mark.parametrize("kind", KINDS)
def test_files_swapped_after_the_check_are_not_what_loads(
    built, tmp_path, monkeypatch, reference, kind
):
    """Garbage replaces every file of the folder the moment a loader is called.

    The session still computes the graph's logits: it loads its verified private copy.
    """
    folder = _copy(built, kind, tmp_path)
    real_session, real_module = onnxruntime.InferenceSession, tvm.runtime.load_module
    loaded: list[str] = []

    def swap(real):
        def loader(path, *a, **kw):
            loaded.append(str(path))
            for name in json.loads((folder / "manifest.json").read_text())["files"]:
                size = (folder / name).stat().st_size
                (folder / name).write_bytes(b"\x7fELF" + bytes(max(size - 4, 0)))
            return real(path, *a, **kw)

        return loader

    monkeypatch.setattr(onnxruntime, "InferenceSession", swap(real_session))
    monkeypatch.setattr(tvm.runtime, "load_module", swap(real_module))
    session = irgraph.runtimes.open(folder)
    assert loaded and not any(p.startswith(str(folder)) for p in loaded)
    np.testing.assert_allclose(session.forward(IDS), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_trusted_folders_skip_the_hashes_but_not_the_path_checks(
    built, tmp_path, loads, reference, kind
):
    folder = _copy(built, kind, tmp_path)
    (folder / "graph.irg").write_text("changed after compile")  # not loaded by the session
    with pytest.raises(RuntimeFailure, match="graph.irg does not match"):
        irgraph.runtimes.open(folder)
    session = irgraph.runtimes.open(folder, verify=False)
    np.testing.assert_allclose(session.forward(IDS), reference, rtol=1e-4, atol=1e-4)
    assert all(p.startswith(str(folder.resolve())) for p in loads)
    loads.clear()
    _edit(folder, lambda m: m[kind].__setitem__(LOADER[kind], "../elsewhere"))
    _refused(folder, "must name a file in the artifact", loads, verify=False)


def test_onnx_external_data_outside_the_artifact_is_refused(built, tmp_path, loads):
    """model.onnx may name its weights' file itself: that name is checked like the manifest's."""
    folder = _copy(built, "onnx", tmp_path)
    shutil.copyfile(folder / "model.onnx.data", tmp_path / "stolen.data")
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    tensor = next(
        t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    )
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = "../stolen.data"
    onnx.save(model, str(folder / "model.onnx"))
    _edit(folder, lambda m: m["files"].__setitem__("model.onnx", _sha(folder / "model.onnx")))
    message = _refused(folder, "external data location must name a file in the artifact", loads)
    assert tensor.name in message and "../stolen.data" in message


def test_the_cli_reads_a_listed_tokenizer_only_after_its_hash_check(built, tmp_path):
    folder = _copy(built, "onnx", tmp_path)
    assert read_listed(folder, "tokenizer.json") is None  # not listed: not read
    (folder / "tokenizer.json").write_text("{}")
    _edit(folder, lambda m: m["files"].__setitem__("tokenizer.json", "0" * 64))
    with pytest.raises(RuntimeFailure, match="tokenizer.json does not match its sha256"):
        read_listed(folder, "tokenizer.json")
