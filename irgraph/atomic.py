"""Write a folder atomically: build it beside the target, then rename it into place.

A failure (or Ctrl-C) while writing leaves the old folder, if any, untouched
and no half-written one behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from irgraph.errors import ConfigError


@contextmanager
def atomic_folder(
    path: str | os.PathLike[str], *, overwrite: bool, hint: str = ""
) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces `path`."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise ConfigError(f"output folder exists{hint}", where=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
