"""The output-folder rule every command and API that writes a folder follows.

    - a missing or empty folder is written;
    - a non-empty folder is refused unless `force` is given, and even then it is
      replaced only if it is an irgraph output (a saved graph, an artifact, an exported
      checkpoint or a training run: `graph.irg`, `manifest.json`, `irgraph_export.json`
      or `checkpoints/step-*/state.json`);
    - a folder that overlaps the command's inputs (the same folder, an input inside
      it, or it inside an input folder) is never written, `force` or not;
    - a location that cannot be written (the current folder or one above it, a path
      under a regular file, a parent that is not writable, `/proc/...`) is refused.

All of this is checked before any work starts (`check_output`), so that an hour of
training or compiling never ends in "cannot save". The write itself is atomic
(`irgraph.atomic.atomic_folder`), which checks again. A command that writes one file
(an HTML page) follows the same rule for a file (`check_output_file`, `atomic_file`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from irgraph.errors import ConfigError

# The files whose presence makes a folder an irgraph output (what `save`, `write_artifact`,
# `export-hf` and training write); kept here so that the core does not import the writers.
MARKERS = ("graph.irg", "manifest.json", "irgraph_export.json")
CHECKPOINT_STATE = "checkpoints/step-*/state.json"

PathLike = str | os.PathLike[str]


def irgraph_output_files(folder: PathLike) -> list[str] | None:
    """The files of `folder` if it is an irgraph output (see MARKERS), else None."""
    path = Path(folder)
    if not path.is_dir():
        return None
    if not any((path / m).is_file() for m in MARKERS) and not any(path.glob(CHECKPOINT_STATE)):
        return None
    return sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())


def describe_files(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_location(out: PathLike, inputs: Iterable[PathLike] = ()) -> Path:
    """Refuse an output location that cannot or must not be written; returns it resolved.

    `inputs` are the paths the command reads (folders or files; names that are no
    path, such as zoo model names, are skipped).
    """
    given = Path(out)
    where = str(out) or "''"
    if given.is_symlink():
        raise ConfigError(
            "the output folder is a symbolic link; name the folder itself", where=where
        )
    target = given.resolve()
    cwd = Path.cwd().resolve()
    if _inside(cwd, target):
        raise ConfigError(
            "the output folder would replace the current folder or one above it; "
            "name a new folder, e.g. -o out",
            where=where,
        )
    if target.exists() and not target.is_dir():
        raise ConfigError("the output path is a file", expected="a folder", where=where)
    for inp in inputs:
        src = Path(inp)
        if not src.exists():
            continue
        src = src.resolve()
        if _inside(src, target):
            what = "is" if src == target else "holds"
            raise ConfigError(
                f"the output folder {what} an input of this command ({inp}); "
                "write to another folder",
                where=where,
            )
        if _inside(target, src):
            raise ConfigError(
                f"the output folder lies inside an input of this command ({inp}); "
                "write to another folder",
                where=where,
            )
    _check_parent(target, "folder", where)
    return target


def _check_parent(target: Path, what: str, where: str) -> None:
    """Refuse a location whose nearest existing parent is a file or cannot be written."""
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(
            f"the output {what} would lie under {parent}, which is a file", where=where
        )
    try:  # os.access says yes to root even on /proc; only trying tells
        os.rmdir(tempfile.mkdtemp(prefix=".irgraph-probe.", dir=parent))
    except OSError as e:
        raise ConfigError(
            f"cannot create the output {what} in {parent}: {e.strerror or e}", where=where
        ) from None


def check_output_file(
    out: PathLike,
    inputs: Iterable[PathLike] = (),
    *,
    force: bool = False,
    force_name: str = "--force",
) -> str:
    """The rule for a command that writes one file (`irgraph view`'s page), before any work.

    As for folders: a symbolic link, a path under a file, an unwritable location, and a
    file that is or lies inside one of `inputs` are refused; an existing file is replaced
    only with `force` (and only a regular file). Returns "an existing file" when `force`
    will replace one, else "".
    """
    given = Path(out)
    where = str(out) or "''"
    if given.is_symlink():
        raise ConfigError("the output file is a symbolic link; name the file itself", where=where)
    target = given.resolve()
    if target.is_dir():
        raise ConfigError("the output path is a folder", expected="a file", where=where)
    for inp in inputs:
        src = Path(inp)
        if src.exists() and _inside(target, src.resolve()):
            what = "is" if src.resolve() == target else "lies inside"
            raise ConfigError(
                f"the output file {what} an input of this command ({inp}); write elsewhere",
                where=where,
            )
    _check_parent(target, "file", where)
    if not target.exists():
        return ""
    if not force:
        raise ConfigError(f"the output file exists; pass {force_name} to replace it", where=where)
    if not target.is_file():
        raise ConfigError("the output path exists and is not a regular file", where=where)
    return "an existing file"


def check_output(
    out: PathLike,
    inputs: Iterable[PathLike] = (),
    *,
    force: bool = False,
    force_name: str = "--force",
) -> str:
    """Apply the whole rule (module docstring) before any work starts.

    `force_name` is how the caller spells `force` in the refusal (`--force`, `force=True`).

    Returns what writing `out` will replace: "" for a missing or empty folder, else a
    short list of the irgraph output's files, for the caller to report.
    """
    target = check_location(out, inputs)
    try:
        if not target.is_dir() or not any(target.iterdir()):
            return ""
        files = irgraph_output_files(target)
    except OSError as e:
        raise ConfigError(
            f"cannot read the output folder: {e.strerror or e}", where=str(out)
        ) from None
    if not force:
        if files is None:
            raise ConfigError(
                "the output folder is not empty and irgraph did not write it; "
                "choose a new or empty folder",
                where=str(out),
            )
        raise ConfigError(
            f"the output folder is not empty (an irgraph output); pass {force_name} to replace it",
            where=str(out),
        )
    if files is None:
        raise ConfigError(
            "the output folder is not empty and is not an irgraph output (no "
            f"{', '.join(MARKERS)} or checkpoints/); irgraph replaces only its own outputs, "
            f"{force_name} or not",
            where=str(out),
        )
    return describe_files(files)
