"""The artifact folder every backend writes and every runtime opens (target-agnostic).

It lives in the core so that both sides share one format without importing each
other: codegen writes it, runtimes read it, and neither imports the other.

    out/
      manifest.json   format + version, model, target, IO names/dtypes/symbolic dims,
                      KV-cache layout and naming, quantization, tool versions, the
                      tool versions needed to open it, sha256 of every other file
      graph.irg       the IR text the target files were built from
      ...             the target's files (model.onnx + model.onnx.data, model.so, ...)

API (small on purpose):
  write_artifact(out, graph, target, emit, tools=..., requires=..., force=False) -> Path
      `emit(tmp_dir)` writes the target files into a temporary sibling folder and
      returns the manifest's target-specific entries; the manifest and hashes are
      added and the folder is renamed into place, so a failure leaves nothing.
  read_manifest(folder, verify=True) -> dict
      checks the format version, that the installed tools satisfy `requires`, that
      every listed file is a plain name inside the folder, and every file hash; each
      failure is a RuntimeFailure naming the file or tool.
  with open_artifact(folder, verify=True) as art: ... art.path(name, key) ...
      what runtimes load from: every listed file copied into a private folder and
      hash-checked while copied, so the bytes loaded are the bytes checked; a name the
      manifest gives must be a plain file name listed in `files` (README "Trust model").
  read_listed(folder, name) -> bytes | None
      one small listed file's hash-checked bytes (the CLI's tokenizer.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO

from irgraph import kvcache
from irgraph.atomic import atomic_folder
from irgraph.errors import RuntimeFailure
from irgraph.feeds import index_bounds
from irgraph.ir import Graph
from irgraph.tokenizer import check_tokenizer, model_vocab

MANIFEST, GRAPH, TOKENIZER = "manifest.json", "graph.irg", "tokenizer.json"
FORMAT, FORMAT_VERSION = "irgraph-artifact", 1
_BLOCK = 1 << 22


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def tool_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def io_entry(name: str, t: Any) -> dict[str, Any]:
    return {
        "name": name,
        "dtype": str(t.dtype),
        "shape": [d if isinstance(d, int) else str(d) for d in t.shape],
    }


def describe(graph: Graph) -> dict[str, Any]:
    """The target-independent manifest entries of a graph: IO and KV-cache layout and naming."""
    return {
        "model": graph.name,
        "inputs": [io_entry(n, v.type) for n, v in graph.inputs.items()],
        "outputs": [io_entry(n, v.type) for n, v in graph.outputs.items()],
        "kv_cache": kvcache.manifest_entry(
            graph.meta, {n: v.type for n, v in graph.inputs.items()}
        ),
        "input_bounds": index_bounds(graph),  # what sessions check ids and positions against
        "quantization": quantization(graph),
        "meta": graph.meta,
    }


def quantization(graph: Graph) -> dict[str, str] | None:
    """Quantized weight -> its type spec (`i4<g32,sym,f16>`, irgraph/quant.py); None if none."""
    specs = {
        name: f"{v.type.dtype}<{v.type.quant}>"
        for name, v in graph.params.items()
        if v.type.quant is not None
    }
    return specs or None


def copy_extra_files(graph: Graph, files: Mapping[str, str | os.PathLike[str]], tmp: Path) -> None:
    """Copy `files` (name -> source) into the artifact; a tokenizer.json must fit the model."""
    for name, src in files.items():
        if name == TOKENIZER:
            check_tokenizer(src, model_vocab(index_bounds(graph), graph.meta))
        shutil.copyfile(src, tmp / name)


def write_artifact(
    out: str | os.PathLike[str],
    graph: Graph,
    target: str,
    emit: Callable[[Path], Mapping[str, Any]],
    *,
    tools: Mapping[str, str | None],
    requires: Mapping[str, str],
    force: bool = False,
) -> Path:
    """Write an artifact folder for `graph` atomically; see the module docstring."""
    target_dir = Path(out)
    with atomic_folder(target_dir, overwrite=force, force_name="force=True") as tmp:
        (tmp / GRAPH).write_text(str(graph))
        entries = dict(emit(tmp))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "target": target,
            **describe(graph),
            **entries,
            "tools": {"irgraph": tool_version("irgraph"), **tools},
            "requires": dict(requires),
        }
        manifest["files"] = {p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return target_dir


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


# The JSON type of every manifest entry a reader uses; "str map": an object of strings.
_FIELD_TYPES: dict[str, str] = {
    "target": "string",
    "model": "string",
    "inputs": "array",
    "outputs": "array",
    "kv_cache": "object",
    "meta": "object",
    "tools": "object",
    "requires": "str map",
}
_JSON_TYPES: dict[str, type] = {"string": str, "array": list, "object": dict, "str map": dict}


def _check_field_types(manifest: dict[str, Any], path: Path) -> None:
    """A manifest entry of the wrong JSON type fails here, by name, not as a traceback later."""
    for key, kind in _FIELD_TYPES.items():
        value = manifest.get(key)
        if value is None:
            continue
        if not isinstance(value, _JSON_TYPES[kind]):
            bad, got = key, type(value).__name__
        elif kind == "str map" and isinstance(value, dict):
            bad, got = next(
                (
                    (f"{key}.{k}", type(v).__name__)
                    for k, v in value.items()
                    if not isinstance(v, str)
                ),
                ("", ""),
            )
        else:
            bad = ""
        if bad:
            raise RuntimeFailure(
                f"manifest entry {bad!r} has the wrong type",
                expected="a string"
                if bad != key
                else f"a JSON {kind}".replace("str map", "object"),
                got=got,
                where=str(path),
            )


def read_manifest(folder: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """The checked manifest of the artifact in `folder` (format, required tools, file hashes)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise RuntimeFailure(f"not an artifact: no {MANIFEST}", where=str(folder))
    if path.is_symlink() and _root(folder) not in path.resolve().parents:
        raise RuntimeFailure(f"{MANIFEST} resolves outside the artifact folder", where=str(path))
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, or nested past the limit
        raise RuntimeFailure(f"manifest is not JSON: {e}", where=str(path)) from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or manifest.get("format_version") != FORMAT_VERSION
    ):
        got = (
            f"{manifest.get('format')} v{manifest.get('format_version')}"
            if isinstance(manifest, dict)
            else "?"
        )
        raise RuntimeFailure(
            "unsupported artifact format",
            expected=f"{FORMAT} v{FORMAT_VERSION}",
            got=got,
            where=str(path),
        )
    _check_field_types(manifest, path)
    for package, minimum in (manifest.get("requires") or {}).items():
        installed = tool_version(package)
        if installed is None or _version_tuple(installed) < _version_tuple(minimum):
            raise RuntimeFailure(
                f"this artifact needs {package} >= {minimum}",
                expected=minimum,
                got=installed or "not installed",
                where=str(path),
            )
    files = _listed_files(manifest, path)
    if verify:
        root = _root(folder)
        for name in sorted(_present(root) - set(files)):
            raise RuntimeFailure(
                f"file {name} is not listed in the manifest", where=str(folder / name)
            )
        for name, digest in files.items():
            with _open_listed(root, name, folder) as source:
                if _hash(source) != digest:
                    raise _mismatch(name, digest, folder)
    return manifest


# -- closed world: an artifact loads only its own listed, hash-checked files -------------------


class Artifact:
    """An opened artifact: its checked manifest and a folder holding its verified files.

    With verify=True every listed file was copied into a private folder (mode 0700) and
    hashed while copied; `path(name)` points there, so what a runtime loads (a `.so` through
    dlopen, weights, ONNX models and their external data) are the bytes that were checked,
    whatever happens to the artifact folder meanwhile. With verify=False (a trusted folder)
    `path` points into the artifact itself; names are still checked to stay inside it.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], root: Path):
        self.folder, self.manifest, self.root = folder, manifest, root

    def path(self, name: Any, key: str) -> Path:
        """The file the manifest's `key` names: a plain name listed in `files`."""
        where = str(self.folder / MANIFEST)
        _check_name(name, key, where)
        if name not in self.manifest["files"]:
            raise RuntimeFailure(
                f"{key} names {name!r}, which the manifest's files do not list", where=where
            )
        return self.root / name


@contextmanager
def open_artifact(
    folder: str | os.PathLike[str],
    *,
    verify: bool = True,
    check: Callable[[dict[str, Any]], Any] | None = None,
) -> Iterator[Artifact]:
    """The artifact at `folder` with its files verified into a private copy; see `Artifact`.

    `check(manifest)` (a runtime's own manifest checks: target, tool release) runs before
    any file is copied.

    Load everything inside the `with`: the private copy is deleted when it ends (what was
    loaded stays loaded: a dlopen'ed library and mapped weights outlive the unlink).
    """
    folder = Path(folder)
    manifest = read_manifest(folder, verify=False)
    if check is not None:
        check(manifest)
    root = _root(folder)
    files = manifest["files"]
    for name in sorted(_present(root) - set(files)):  # e.g. a library the .so could pull in
        raise RuntimeFailure(f"file {name} is not listed in the manifest", where=str(folder / name))
    if not verify:
        yield Artifact(folder, manifest, root)
        return
    private = Path(tempfile.mkdtemp(prefix="irgraph-verified-"))  # mode 0700
    try:
        for name, digest in files.items():
            with _open_listed(root, name, folder) as source:
                if _copy_hashed(source, private / name, folder) != digest:
                    raise _mismatch(name, digest, folder)
        yield Artifact(folder, manifest, private)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def read_listed(folder: str | os.PathLike[str], name: str) -> bytes | None:
    """The hash-checked bytes of the small listed file `name` (tokenizer.json); None if unlisted.

    Read into memory once and hashed there: the bytes returned are the bytes checked.
    """
    folder = Path(folder)
    manifest = read_manifest(folder, verify=False)
    digest = manifest["files"].get(name)
    if digest is None:
        return None
    with _open_listed(_root(folder), name, folder) as source:
        data = source.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise _mismatch(name, digest, folder)
    return data


def _check_name(name: Any, key: str, where: str) -> None:
    """A file an artifact names is a plain file name: no folders, no '..', not absolute."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..", MANIFEST)
        or "/" in name
        or "\\" in name
        or "\0" in name
        or len(name.encode("utf-8", "replace")) > 255
    ):
        raise RuntimeFailure(
            f"{key} must name a file in the artifact folder",
            expected="a plain file name listed in files",
            got=repr(name)[:200],
            where=where,
        )


def _listed_files(manifest: dict[str, Any], path: Path) -> dict[str, str]:
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise RuntimeFailure(
            "manifest has no files table", expected="files: {name: sha256}", where=str(path)
        )
    for name, digest in files.items():
        _check_name(name, "files", str(path))
        if not (isinstance(digest, str) and len(digest) == 64):
            raise RuntimeFailure(
                f"files[{name!r}] is not a sha256 hex digest",
                got=repr(digest)[:80],
                where=str(path),
            )
    return files


def _root(folder: Path) -> Path:
    try:
        return folder.resolve(strict=True)
    except OSError:
        raise RuntimeFailure("artifact folder cannot be read", where=str(folder)) from None


def _present(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_file() or p.is_symlink()} - {MANIFEST}


@contextmanager
def _open_listed(root: Path, name: str, folder: Path) -> Iterator[BinaryIO]:
    """Open a listed file for reading; it must resolve to a regular file inside the artifact."""
    where = str(folder / name)
    path = root / name
    if not path.exists() and not path.is_symlink():
        raise RuntimeFailure(f"file {name} is missing", where=where)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        raise RuntimeFailure(
            f"file {name} cannot be resolved (a symlink loop?)", where=where
        ) from None
    if resolved.parent != root and root not in resolved.parents:
        raise RuntimeFailure(
            f"file {name} resolves outside the artifact folder (a symlink)", where=where
        )
    try:  # O_NOFOLLOW | O_NONBLOCK: a symlink or FIFO swapped in after the check is not followed
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise RuntimeFailure(f"file {name} cannot be opened: {e.strerror}", where=where) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RuntimeFailure(f"file {name} is not a regular file", where=where)
    with os.fdopen(fd, "rb") as f:
        yield f


def _hash(source: BinaryIO) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: source.read(_BLOCK), b""):
        h.update(block)
    return h.hexdigest()


def _copy_hashed(source: BinaryIO, target: Path, folder: Path) -> str:
    """Copy `source` to `target`, hashing the bytes written; returns the hex digest."""
    h = hashlib.sha256()
    try:
        with open(target, "xb") as out:
            for block in iter(lambda: source.read(_BLOCK), b""):
                h.update(block)
                out.write(block)
    except OSError as e:
        raise RuntimeFailure(
            f"cannot copy the artifact's files into {target.parent} to verify them: {e.strerror}"
            " (set TMPDIR to a folder with room, or open a trusted folder with verify=False)",
            where=str(folder),
        ) from None
    return h.hexdigest()


def _mismatch(name: str, digest: str, folder: Path) -> RuntimeFailure:
    # The file's own hash is not shown: it may be a file outside the artifact.
    return RuntimeFailure(
        f"file {name} does not match its sha256 in the manifest (tampered or corrupt)",
        expected=digest[:16],
        where=str(folder / name),
    )
