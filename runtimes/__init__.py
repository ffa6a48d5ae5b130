"""Runtimes: one API over saved graphs and compiled artifacts (imported as `irgraph.runtimes`).

session = irgraph.runtimes.open("out/llama-onnx")   # or a saved graph folder
logits = session.forward([[1, 2, 3]])
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from irgraph.errors import RuntimeFailure
from irgraph.runtimes.base import Session
from irgraph.serialize import is_graph_dir


def open(path: str | os.PathLike) -> Session:  # noqa: A001  (irgraph.runtimes.open reads naturally)
    """Open a saved graph folder (reference interpreter) or a compiled artifact."""
    folder = Path(path)
    manifest = folder / "manifest.json"
    if manifest.is_file() and str(_target(manifest)).startswith("tvm-"):
        from irgraph.runtimes.tvm import TVMSession

        return TVMSession(folder)
    if manifest.is_file() and _target(manifest) == "onnx":
        from irgraph.runtimes.onnx import ORTSession

        return ORTSession(folder)
    if is_graph_dir(folder):
        from irgraph.runtimes.interpreter import InterpreterSession

        return InterpreterSession.open(folder)
    raise RuntimeFailure(
        "not a saved graph or compiled artifact (no graph.irg or manifest.json)", where=str(folder)
    )


def _target(manifest: Path) -> str | None:
    try:
        return json.loads(manifest.read_text()).get("target")
    except (OSError, ValueError, AttributeError):
        raise RuntimeFailure("manifest.json is not a JSON object", where=str(manifest)) from None


__all__ = ["Session", "open"]
