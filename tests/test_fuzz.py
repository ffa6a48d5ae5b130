"""Fuzzing the readers of untrusted files with hypothesis: only irgraph's own errors come out.

The IR text parser, the safetensors reader and the artifact manifest reader each get
mutations of a good file and inputs built from their grammar. The default tier runs a fixed
set of examples (derandomized, so a failure reproduces); the slow tier runs ten times as many
at random. Hypothesis keeps no example database (nothing is written into the repository).
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irgraph.artifact import MANIFEST, open_artifact, read_manifest, sha256
from irgraph.errors import IrgraphError
from irgraph.parser import parse
from irgraph.serialize import load
from irgraph.weights import WeightStore, save_safetensors
from tests.helpers.handbuilt import tiny_llama

QUICK = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
THOROUGH = settings(QUICK, max_examples=6000, derandomize=False)

# -- mutations of a good file --------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, good: bytes, pieces: tuple[bytes, ...] = ()) -> bytes:
    """`good` after a few edits: bytes deleted, replaced, inserted or duplicated, or cut short."""
    data = bytearray(good)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["delete", "replace", "insert", "piece", "cut", "repeat"]))
        if kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "piece" and pieces:
            data[at:at] = draw(st.sampled_from(pieces))
        elif kind == "cut":
            del data[at:]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


# -- the IR text parser --------------------------------------------------------------------

GOOD_IR = str(tiny_llama()).encode()
# Fragments of the grammar, so that edits make near-miss text rather than only noise.
IR_PIECES = tuple(
    p.encode()
    for p in [
        "%",
        "@",
        "[",
        "]",
        "{",
        "}",
        "(",
        ")",
        ",",
        "=",
        ":",
        "+",
        "*",
        '"',
        "\\",
        "\n",
        "-1",
        "0",
        "1e9",
        "-inf",
        "nan",
        "f32",
        "i4",
        "bool",
        "batch",
        "past+seq",
        "2*seq",
        "input %q: f32[2]\n",
        "param @p: f32[3]\n",
        'meta k = [1, [2, "s"]]\n',
        "output o = %x\n",
        "output o = _\n",
        "%x: f32[batch, seq, 32] = add(%x, %x)\n",
        "%z: f32[2] = reshape(%x) {shape=[2]}\n",
        "linear",
        "softmax",
        "embedding",
        "rms_norm",
        "_",
        "}\n",
        'graph "h" {\n',
        "\u00e9",
        "\x00",
        "[" * 40,  # nesting past the parser's limit
    ]
)
IR_TOKENS = st.sampled_from([p.decode() for p in IR_PIECES] + [" ", "x", "7", "%0", "@w"])


def check_parse(text: str) -> None:
    try:
        parse(text)
    except IrgraphError:
        pass


def check_ir_bytes(data: bytes, folder: Path) -> None:
    """Through `load`, which also decodes the file: non-UTF-8 bytes must be an IRError too."""
    (folder / "graph.irg").write_bytes(data)
    try:
        load(folder)
    except IrgraphError:
        pass


@pytest.fixture
def graph_folder(tmp_path: Path) -> Path:
    (tmp_path / "g").mkdir()
    return tmp_path / "g"


@QUICK
@given(mutated(GOOD_IR, IR_PIECES))
def test_parser_survives_mutated_graphs(data: bytes):
    check_parse(data.decode("utf-8", errors="replace"))


@QUICK
@given(st.lists(IR_TOKENS, max_size=60).map("".join))
def test_parser_survives_token_soup(body: str):
    check_parse(f'graph "g" {{\n{body}\n}}\n')
    check_parse(body)


@settings(QUICK, max_examples=300)
@given(st.text(max_size=200))
def test_parser_survives_any_text(text: str):
    check_parse(text)


@settings(QUICK, max_examples=150)
@given(data=mutated(GOOD_IR, IR_PIECES))
def test_load_survives_mutated_graph_bytes(data: bytes, graph_folder: Path):
    check_ir_bytes(data, graph_folder)


# -- the safetensors reader ----------------------------------------------------------------


def _good_safetensors() -> bytes:
    arrays = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.ones(4, dtype=np.int64),
        "c": np.zeros((0, 2), dtype=np.float16),
    }
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "w.safetensors"
        save_safetensors(arrays, file, metadata={"format": "pt"})
        return file.read_bytes()


GOOD_SAFETENSORS = _good_safetensors()
DEEP = b"[" * 20_000  # JSON nested past Python's recursion limit
ST_PIECES = (
    DEEP,
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b",",
    b":",
    b"-1",
    b"1e400",
    b"null",
    b'"F32"',
    b"9" * 20,
)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
DTYPES = st.sampled_from(["F32", "F16", "BF16", "I64", "I8", "U8", "BOOL", "F64", "F8", "", "f32"])


@st.composite
def header_entry(draw: st.DrawFn) -> object:
    """A tensor entry: mostly well-formed fields with hostile values, sometimes anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_SCALARS)
    entry = {
        "dtype": draw(st.one_of(DTYPES, JSON_SCALARS)),
        "shape": draw(
            st.one_of(
                st.lists(st.integers(-3, 2**40), max_size=4), st.lists(JSON_SCALARS, max_size=3)
            )
        ),
        "data_offsets": draw(
            st.one_of(
                st.lists(st.integers(-16, 2**64), min_size=2, max_size=2),
                st.lists(JSON_SCALARS, max_size=3),
                JSON_SCALARS,
            )
        ),
    }
    for key in draw(st.lists(st.sampled_from(list(entry)), max_size=2)):
        entry.pop(key, None)
    return entry


@st.composite
def built_safetensors(draw: st.DrawFn) -> bytes:
    header = draw(
        st.dictionaries(st.sampled_from(["a", "b", "__metadata__", "", "x" * 3]), header_entry())
    )
    blob = json.dumps(header).encode()
    if draw(st.integers(0, 19)) == 0:  # a header nested past Python's recursion limit
        blob = DEEP + blob
    claimed = draw(st.one_of(st.just(len(blob)), st.integers(0, 2**64 - 1)))
    data = draw(st.binary(max_size=64))
    return struct.pack("<Q", claimed) + blob + data


def check_safetensors(data: bytes, folder: Path) -> None:
    path = folder / "w.safetensors"
    path.write_bytes(data)
    try:
        store = WeightStore.open(path)
        for name in store:
            store.shape_dtype(name)
            np.asarray(store[name]).sum()
    except IrgraphError:
        pass


@settings(QUICK, max_examples=300)
@given(data=mutated(GOOD_SAFETENSORS, ST_PIECES))
def test_safetensors_reader_survives_mutated_files(data: bytes, tmp_path: Path):
    check_safetensors(data, tmp_path)


@settings(QUICK, max_examples=150)
@given(data=built_safetensors())
def test_safetensors_reader_survives_hostile_headers(data: bytes, tmp_path: Path):
    check_safetensors(data, tmp_path)


# -- the artifact manifest reader ----------------------------------------------------------

JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
MANIFEST_KEYS = ["format", "format_version", "target", "files", "requires", "tools", "inputs"]


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A small artifact-shaped folder: two listed files and a manifest naming their hashes."""
    folder = tmp_path / "art"
    folder.mkdir()
    (folder / "graph.irg").write_bytes(GOOD_IR)
    (folder / "model.bin").write_bytes(b"\x00" * 64)
    files = {p.name: sha256(p) for p in sorted(folder.iterdir())}
    manifest = {
        "format": "irgraph-artifact",
        "format_version": 1,
        "target": "onnx",
        "files": files,
        "requires": {"numpy": "1.0"},
        "tools": {"irgraph": "0.1.0"},
        "inputs": [],
        "outputs": [],
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


GOOD_MANIFEST = json.dumps(
    {"format": "irgraph-artifact", "format_version": 1, "target": "onnx", "files": {}}
).encode()


def check_manifest(folder: Path, data: bytes) -> None:
    (folder / MANIFEST).write_bytes(data)
    for verify in (False, True):
        try:
            read_manifest(folder, verify=verify)
        except IrgraphError:
            pass
    try:
        with open_artifact(folder) as art:
            for name in art.manifest["files"]:
                art.path(name, "files").read_bytes()
    except IrgraphError:
        pass


@st.composite
def manifest_edits(draw: st.DrawFn, folder_files: tuple[str, ...]) -> bytes:
    """A good manifest with some keys replaced by hostile JSON, or a file name swapped."""
    manifest: dict[str, object] = json.loads(GOOD_MANIFEST)
    manifest["files"] = {name: "0" * 64 for name in folder_files}
    for key in draw(st.lists(st.sampled_from(MANIFEST_KEYS), max_size=3)):
        manifest[key] = draw(JSON_VALUES)
    if draw(st.booleans()):
        names = st.sampled_from(
            ["../x", "/etc/passwd", "", ".", "a/b", "x" * 300, "\x00", "graph.irg"]
        )
        manifest["files"] = {draw(names): draw(st.one_of(st.just("0" * 64), JSON_SCALARS))}
    return json.dumps(manifest).encode()


@settings(QUICK, max_examples=200)
@given(data=mutated(GOOD_MANIFEST, (DEEP, b"{", b"[", b'"', b"null", b"1e999", b"\\u0000")))
def test_manifest_reader_survives_mutated_manifests(data: bytes, artifact: Path):
    check_manifest(artifact, data)


@settings(QUICK, max_examples=150)
@given(data=manifest_edits(("graph.irg", "model.bin")))
def test_manifest_reader_survives_hostile_entries(data: bytes, artifact: Path):
    check_manifest(artifact, data)


# -- the slow tier: the same properties, ten times as many random examples ----------------


@pytest.mark.slow
@THOROUGH
@given(
    ir=mutated(GOOD_IR, IR_PIECES),
    soup=st.lists(IR_TOKENS, max_size=200).map("".join),
    st_data=st.one_of(mutated(GOOD_SAFETENSORS, ST_PIECES), built_safetensors()),
    manifest=st.one_of(mutated(GOOD_MANIFEST), manifest_edits(("graph.irg", "model.bin"))),
)
def test_readers_survive_many_more_cases(ir, soup, st_data, manifest, artifact: Path):
    check_parse(ir.decode("utf-8", errors="replace"))
    check_parse(f'graph "g" {{\n{soup}\n}}\n')
    check_ir_bytes(ir, artifact.parent)
    check_safetensors(st_data, artifact.parent)
    check_manifest(artifact, manifest)
