"""The output rule on the command line: one `--force` option and one check.

Every verb that writes a folder (import-hf, opt, compile, zoo build, train) checks
its `-o` before any work starts (`irgraph.output.check_output`) and reports what
`--force` replaced once it has written the new folder. A verb that writes one file
(`view -o page.html`, `opt --view`) checks it by the same rule for a file
(`irgraph.output.check_output_file`) and writes it with `irgraph.atomic.atomic_file`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from irgraph.output import check_output, check_output_file

FORCE_HELP = (
    "Replace a non-empty output folder, if it is an irgraph output (graph, artifact or "
    "training run); a folder irgraph did not write, or one holding this command's "
    "inputs, is never replaced."
)

FILE_FORCE_HELP = (
    "Replace an existing output file; a folder, a symbolic link or one of this command's "
    "inputs is never replaced."
)

force_option = click.option("--force", is_flag=True, help=FORCE_HELP)


F = TypeVar("F", bound=Callable[..., Any])


def output_folder_option(what: str, dest: str = "out") -> Callable[[F], F]:
    """`-o/--output FOLDER` (required), as every command that writes a folder spells it."""
    return click.option(
        "-o",
        "--output",
        dest,
        required=True,
        type=click.Path(file_okay=False),
        help=f"{what}; new or empty unless --force.",
    )


force_file_option = click.option("--force", is_flag=True, help=FILE_FORCE_HELP)


def check_output_option(
    out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None], force: bool
) -> str:
    """Refuse a bad `-o` before the work starts; returns what it will replace ("" if nothing)."""
    return check_output(out, [i for i in inputs if i], force=force)


def check_output_file_option(
    out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None], force: bool
) -> str:
    """Refuse a bad output file before the work starts; returns what it will replace."""
    return check_output_file(out, [i for i in inputs if i], force=force)


def report_replaced(out: str | os.PathLike[str], replaced: str) -> None:
    if replaced:
        click.echo(f"replaced the earlier irgraph output in {out} ({replaced})", err=True)


@contextmanager
def replaced_in_place(
    out: str | os.PathLike[str], replaced: str, owner: bool = True
) -> Iterator[None]:
    """For work that writes into `out` as it goes (training): move the old output aside first.

    `replaced` is what `check_output_option` returned ("" : nothing to move). The old
    output is deleted once the body succeeds, and put back, in place of whatever the body
    wrote, if it fails, so that --force never loses the old run for a failed new one.
    Only the `owner` process (rank 0 under torchrun) moves anything.
    """
    if not replaced or not owner:
        yield
        return
    target = Path(out)
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced.", dir=target.parent))
    target.rename(aside)  # onto the empty folder mkdtemp made: a name no one else holds
    try:
        yield
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        aside.rename(target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    report_replaced(out, replaced)
