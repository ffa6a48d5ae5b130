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
      checks the format version, that the installed tools satisfy `requires`, and
      every file hash; each failure is a RuntimeFailure naming the file or tool.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from irgraph import lm
from irgraph.atomic import atomic_folder
from irgraph.errors import RuntimeFailure
from irgraph.feeds import index_bounds
from irgraph.ir import Graph
from irgraph.tokenizer import check_tokenizer, model_vocab

MANIFEST, GRAPH, TOKENIZER = "manifest.json", "graph.irg", "tokenizer.json"
FORMAT, FORMAT_VERSION = "irgraph-artifact", 1


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
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
    past = [n for n in graph.inputs if n.startswith(lm.PAST_PREFIX)]
    return {
        "model": graph.name,
        "inputs": [io_entry(n, v.type) for n, v in graph.inputs.items()],
        "outputs": [io_entry(n, v.type) for n, v in graph.outputs.items()],
        "kv_cache": {
            "layout": "bnsh",
            "past": past,
            "present": [lm.present_name(n) for n in past],
            "past_template": "past_key_values.%d.{key,value,latent}",
            "present_template": "present.%d.*",
        },
        "input_bounds": index_bounds(graph),  # what sessions check ids and positions against
        "quantization": None,
        "meta": graph.meta,
    }


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


def read_manifest(folder: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """The checked manifest of the artifact in `folder` (format, required tools, file hashes)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise RuntimeFailure(f"not an artifact: no {MANIFEST}", where=str(folder))
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
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
    for package, minimum in (manifest.get("requires") or {}).items():
        installed = tool_version(package)
        if installed is None or _version_tuple(installed) < _version_tuple(minimum):
            raise RuntimeFailure(
                f"this artifact needs {package} >= {minimum}",
                expected=minimum,
                got=installed or "not installed",
                where=str(path),
            )
    if verify:
        files = manifest.get("files") or {}
        present = {p.name for p in folder.iterdir() if p.is_file()} - {MANIFEST}
        for name in sorted(present - set(files)):
            raise RuntimeFailure(
                f"file {name} is not listed in the manifest", where=str(folder / name)
            )
        for name, digest in files.items():
            file = folder / name
            if not file.is_file():
                raise RuntimeFailure(f"file {name} is missing", where=str(file))
            if sha256(file) != digest:
                raise RuntimeFailure(
                    f"file {name} does not match its sha256 in the manifest (tampered or corrupt)",
                    expected=digest[:16],
                    got=sha256(file)[:16],
                    where=str(file),
                )
    return manifest
