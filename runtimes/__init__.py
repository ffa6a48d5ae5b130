"""Runtimes: one API over saved graphs and compiled artifacts (imported as `irgraph.runtimes`).

session = irgraph.runtimes.open("out/llama-onnx")   # or a saved graph folder
logits = session.forward([[1, 2, 3]])

An artifact's manifest names its target; the backend table (`irgraph.backends`) names the
session class and manifest reader of each target, imported only when one is opened.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from irgraph.backends import BACKENDS
from irgraph.errors import ConfigError, RuntimeFailure
from irgraph.runtimes.base import Session
from irgraph.serialize import GRAPH_FILE, WEIGHTS_FILE, is_graph_dir


def open(  # noqa: A001  (irgraph.runtimes.open reads naturally)
    path: str | os.PathLike[str],
    *,
    verify: bool = True,
    cast_weights: bool = False,
    allow_nonfinite: bool = False,
) -> Session:
    """Open a saved graph folder (reference interpreter) or a compiled artifact.

    An artifact loads only the files its manifest lists, from a private copy whose sha256
    was checked while copying (README "Trust model"). `verify=False` skips the hashes and
    the copy for a folder you trust (multi-GB weights open faster); file names are still
    checked to stay inside the artifact. The CLI always verifies.

    A saved graph's weights are checked as it opens: stored dtypes as declared (unless
    `cast_weights`), every value finite (unless `allow_nonfinite`; one pass over the weights).
    An artifact's weights were checked when it was compiled, and its file hashes when it opens.
    """
    folder = Path(path)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        if cast_weights:
            raise ConfigError(
                "casting weights applies to saved graphs: an artifact's weights were fixed "
                "(and checked) when it was compiled (--cast-weights / cast_weights=True)",
                where=str(folder),
            )
        target = _target(manifest)
        for backend in BACKENDS:
            if target in backend.targets and backend.session:
                session: Session = backend.load("session")(folder, verify=verify)
                return session
        raise RuntimeFailure(
            "manifest names no target a runtime here opens",
            expected=" | ".join(t for b in BACKENDS if b.session for t in b.targets),
            got=repr(target),
            where=str(manifest),
        )
    if is_graph_dir(folder):
        _refuse_artifact_without_manifest(folder)
        from irgraph.runtimes.interpreter import InterpreterSession

        return InterpreterSession.open(
            folder, cast_weights=cast_weights, allow_nonfinite=allow_nonfinite
        )
    raise RuntimeFailure(
        "not a saved graph or compiled artifact (no graph.irg or manifest.json)", where=str(folder)
    )


def _refuse_artifact_without_manifest(folder: Path) -> None:
    """An artifact whose manifest.json is gone would otherwise read as a weightless saved graph."""
    if (folder / WEIGHTS_FILE).is_file():
        return
    others = sorted(
        p.name for p in folder.iterdir() if p.name not in (GRAPH_FILE, "tokenizer.json")
    )
    if others:
        raise RuntimeFailure(
            f"manifest.json is missing, so not a compiled artifact (though it holds "
            f"{', '.join(others[:3])}{', ...' if len(others) > 3 else ''}), and {WEIGHTS_FILE} "
            "is missing, so not a runnable saved graph",
            where=str(folder),
        )


def read_manifest(folder: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """The manifest of the artifact in `folder`, checked by its target's reader.

    The reader checks the format version, the tools it needs and every file's hash.
    """
    manifest = Path(folder) / "manifest.json"
    target = _target(manifest) if manifest.is_file() else None
    for backend in BACKENDS:
        if target in backend.targets and backend.reader:
            result: dict[str, Any] = backend.load("reader")(folder, verify=verify)
            return result
    raise RuntimeFailure(
        "not a compiled artifact of a known target",
        expected=" | ".join(t for b in BACKENDS if b.reader for t in b.targets),
        got=target,
        where=str(folder),
    )


def _target(manifest: Path) -> Any:
    try:
        target = json.loads(manifest.read_bytes()).get("target")
    except (OSError, ValueError, AttributeError, RecursionError):
        raise RuntimeFailure("manifest.json is not a JSON object", where=str(manifest)) from None
    return target


__all__ = ["Session", "open", "read_manifest"]
