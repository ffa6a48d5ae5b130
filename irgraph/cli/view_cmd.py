"""`irgraph view PATH -o graph.html`: the graph as one self-contained HTML page.

PATH is a saved graph, a compiled artifact (its graph.irg, read as `irgraph inspect` reads
it) or a zoo model name (published size unless `--size tiny`). `--diff B` draws B with the
nodes that differ from PATH marked; `irgraph opt --view` marks what its passes changed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from irgraph import model_zoo
from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.serialize import GRAPH_FILE, load
from irgraph.view.data import view_data
from irgraph.view.diff import Diff, structural_diff
from irgraph.view.html import render

OUTPUT_HELP = "The HTML file to write; an existing file is replaced only with --force."


def read_graph(path: str, size: str | None) -> Graph:
    """A saved graph or artifact folder, else a zoo model name."""
    folder = Path(path)
    if folder.is_dir():
        if size is not None:
            raise click.BadParameter("applies to zoo model names, not folders", param_hint="--size")
        return load(folder)
    if path in model_zoo.names():
        return model_zoo.build(path, size=size or "published", weights=False)  # type: ignore[arg-type]
    raise ConfigError(
        f"not a graph folder, artifact folder (with {GRAPH_FILE}) or zoo model name",
        got=path,
        where="PATH",
    )


def check_html_output(output: str, force: bool) -> None:
    """Refuse a folder, a missing parent or (without --force) an existing file, before any work."""
    out = Path(output)
    if out.is_dir():
        raise click.BadParameter(f"{output} is a folder (expected an .html file)", param_hint="-o")
    if not out.parent.is_dir():
        raise click.BadParameter(f"folder {out.parent} does not exist", param_hint="-o")
    if out.exists() and not force:
        raise click.BadParameter(f"{output} exists (add --force to replace it)", param_hint="-o")


def write_page(
    graph: Graph,
    output: str,
    *,
    context: int,
    diff: Diff | None = None,
    before: Graph | None = None,
    title: str | None = None,
) -> None:
    """Write the page atomically: a reader never sees half a file."""
    page = render(view_data(graph, context=context, diff=diff, before=before, title=title))
    out = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    click.echo(f"wrote {output} ({len(page) / 2**20:.2f} MiB, {len(graph.nodes)} nodes)", err=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@click.command()
@click.argument("path")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=OUTPUT_HELP)
@click.option(
    "--size",
    type=click.Choice(model_zoo.SIZES),
    help="For a zoo model name: published dims (default) or the tiny twin.",
)
@click.option("--diff", "against", help="Draw this graph instead, marking what differs from PATH.")
@click.option(
    "--context",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Context length for FLOPs per token (as irgraph inspect).",
)
@click.option("--force", is_flag=True, help="Replace an existing output file.")
def view(
    path: str, output: str, size: str | None, against: str | None, context: int, force: bool
) -> None:
    """Write the graph at PATH as a self-contained HTML page (layers fold; nodes coloured by cost).

    PATH is a saved graph or artifact folder, or a zoo model name. With --diff B, B is drawn
    and its nodes matched to PATH's by structure (op, attributes, parameter names, matched
    inputs): added, rewritten and removed nodes are marked.
    """
    check_html_output(output, force)
    graph = read_graph(path, size)
    if against is None:
        write_page(graph, output, context=context)
        return
    after = read_graph(against, size)
    diff = structural_diff(graph, after)
    write_page(
        after,
        output,
        context=context,
        diff=diff,
        before=graph,
        title=f"{after.name} (diff against {graph.name})",
    )
