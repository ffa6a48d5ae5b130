"""Write a folder atomically: build it beside the target, then rename it into place.

The target must pass the output-folder rule (`irgraph.output.check_output`): a
non-empty folder is replaced only with `overwrite` and only if irgraph wrote it.
A failure (or Ctrl-C) while writing leaves the old folder, if any, untouched and
no half-written one behind; the new folder gets the usual umask mode, not the
private mode of a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from irgraph.output import check_output, check_output_file


def current_umask() -> int:
    """The process umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_folder(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    force_name: str = "overwrite=True",
) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces `path`.

    Raises ConfigError before anything is written if `path` may not be written
    (see `irgraph.output`); `inputs` are paths the caller reads, never replaced.
    """
    target = Path(path)
    check_output(target, inputs, force=overwrite, force_name=force_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        tmp.chmod(0o777 & ~current_umask())
        if target.exists():
            # rename(2) onto an empty folder replaces it: a unique name, never another's .old
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            target.rename(old)
            try:
                tmp.rename(target)
            except BaseException:
                old.rename(target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    force_name: str = "overwrite=True",
) -> Iterator[Path]:
    """Yield a temporary sibling file to write; on success it replaces `path` (umask mode).

    The file rule (`irgraph.output.check_output_file`) is checked first; a failure leaves
    the old file, if any, as it was and no temporary file behind.
    """
    target = Path(path)
    check_output_file(target, inputs, force=overwrite, force_name=force_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
