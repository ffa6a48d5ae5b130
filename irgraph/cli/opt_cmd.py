"""`irgraph opt PATH --passes PIPELINE -o DIR`: apply a pass pipeline to a saved graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from irgraph.cli import calibration as calib
from irgraph.cli import progress
from irgraph.cli.common import cast_weights_option
from irgraph.cli.output_rule import (
    check_output_option,
    force_option,
    output_folder_option,
    report_replaced,
)
from irgraph.cli.pass_options import apply_pipeline, pipeline_options
from irgraph.cli.view_cmd import check_html_output, write_page
from irgraph.serialize import load, save
from irgraph.view.diff import recorded_diff


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@output_folder_option("Folder for the transformed graph (written atomically)", dest="output")
@force_option
@cast_weights_option
@click.option(
    "--view",
    "view_html",
    type=click.Path(dir_okay=False),
    help="Also write the result as an HTML page (irgraph view) marking the nodes the passes "
    "added, rewrote or removed; an existing file is replaced only with --force.",
)
@pipeline_options
def opt(
    path: str,
    output: str,
    force: bool,
    view_html: str | None,
    passes: str,
    print_after: tuple[str, ...],
    check: bool,
    allow_arch_change: bool,
    timing: bool,
    check_mode: str,
    cast_weights: bool,
    **calibration: Any,
) -> None:
    """Run a pass pipeline on the saved graph at PATH and save the result to -o.

    With --cast-weights, weights stored in another dtype than declared are saved cast.
    """
    if not passes:
        raise click.BadParameter("needs a pipeline", param_hint="--passes")
    replaced = check_output_option(output, [path], force)
    if view_html is not None:
        check_html_output(view_html, force, [path])
    tokenizer = Path(path) / "tokenizer.json"
    before = load(path, cast_weights=cast_weights)  # saved with the declared dtypes
    graph = apply_pipeline(
        before,
        passes,
        print_after,
        check,
        allow_arch_change,
        timing,
        check_mode=check_mode,
        calibration=calib.from_options(calibration),
        tokenizer=tokenizer if tokenizer.is_file() else None,
    )
    with progress.reporter() as report:
        save(graph, output, overwrite=force, inputs=[path], progress=report)
    report_replaced(output, replaced)
    click.echo(f"wrote {output} ({len(graph.nodes)} nodes, {len(graph.params)} params)", err=True)
    if view_html is not None:
        diff = recorded_diff(before, graph)
        write_page(graph, view_html, context=4096, diff=diff, before=before, force=force)
