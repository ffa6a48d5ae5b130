"""`irgraph view PATH -o graph.html`: the graph as one self-contained HTML page.

PATH is a saved graph, a compiled artifact (its graph.irg, read as `irgraph inspect` reads
it) or a zoo model name (published size unless `--size tiny`). `--diff B` draws B with the
nodes that differ from PATH marked; `irgraph opt --view` marks what its passes changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from irgraph import model_zoo
from irgraph.atomic import atomic_file
from irgraph.cli.output_rule import check_output_file_option, force_file_option
from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.serialize import GRAPH_FILE, load
from irgraph.view.data import view_data
from irgraph.view.diff import Diff, structural_diff
from irgraph.view.html import render

OUTPUT_HELP = "The HTML file to write (its folder is made); an existing file only with --force."


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


def check_html_output(output: str, force: bool, inputs: Sequence[str | None] = ()) -> None:
    """The output rule for a file (output_rule.py), before any work."""
    check_output_file_option(output, [i for i in inputs if i and Path(i).exists()], force)


def write_page(
    graph: Graph,
    output: str,
    *,
    context: int,
    diff: Diff | None = None,
    before: Graph | None = None,
    title: str | None = None,
    force: bool = False,
) -> None:
    """Write the page atomically (a reader never sees half a file), with the user's umask."""
    page = render(view_data(graph, context=context, diff=diff, before=before, title=title))
    with atomic_file(output, overwrite=force, force_name="--force") as tmp:
        tmp.write_text(page, encoding="utf-8")
    click.echo(f"wrote {output} ({len(page) / 2**20:.2f} MiB, {len(graph.nodes)} nodes)", err=True)


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
@force_file_option
def view(
    path: str, output: str, size: str | None, against: str | None, context: int, force: bool
) -> None:
    """Write the graph at PATH as a self-contained HTML page (layers fold; nodes coloured by cost).

    PATH is a saved graph or artifact folder, or a zoo model name. With --diff B, B is drawn
    and its nodes matched to PATH's by structure (op, attributes, parameter names, matched
    inputs): added, rewritten and removed nodes are marked.
    """
    check_html_output(output, force, [path, against])
    graph = read_graph(path, size)
    if against is None:
        write_page(graph, output, context=context, force=force)
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
        force=force,
    )
