"""`irgraph zoo list|show|build`: the surveyed architectures."""

from __future__ import annotations

import json
from typing import Any

import click

from irgraph import model_zoo
from irgraph.analysis import Cost, cost
from irgraph.cli import progress
from irgraph.cli.inspect_cmd import format_cost
from irgraph.cli.output_rule import (
    check_output_option,
    force_option,
    output_folder_option,
    report_replaced,
)
from irgraph.model_zoo import Size
from irgraph.serialize import save

SIZE = click.option(
    "--size", type=click.Choice(model_zoo.SIZES), help="Published dims or the tiny twin."
)


@click.group()
def zoo() -> None:
    """The surveyed architectures (the LLM survey's Table 5 and friends)."""


def model_row(name: str, c: Cost | None = None) -> dict[str, Any]:
    """`zoo list --json`'s object for `name`; `c`: its cost (default: at published size)."""
    entry = model_zoo.get(name)
    c = c or cost(model_zoo.build(name, size="published"))
    return {
        "name": name,
        "aliases": list(entry.aliases),
        "arch": entry.config.arch.value,
        "published_params": entry.published_params,
        "survey_params": entry.survey_params,
        "params": c.params,
        "active_params": c.active_params,
        "published_active": entry.published_active,
        "flops_per_token": c.prefill_flops_per_token,
        "decode_flops_per_token": c.decode_flops_per_token,
        "kv_bytes_per_token": c.kv_bytes_per_token,
        "params_note": entry.params_note,
        "approximate": list(entry.approximate),
        "claims": list(entry.claims),
    }


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per model.")
def list_(as_json: bool) -> None:
    """List every model with computed parameters (published beside them; active ones for MoE),
    FLOPs/token (4096 context) and KV cache/token, then what each entry builds only
    approximately, and why."""
    names = model_zoo.names()
    rows = []
    with progress.reporter() as report:  # 43 published graphs to build and cost: seconds
        for i, name in enumerate(names):
            report(i, len(names), "building and costing the published graphs")
            rows.append(model_row(name))
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(
        f"{'name':18} {'published':>10} {'computed':>10} {'active':>9} {'pub.active':>10} "
        f"{'GFLOP/tok':>10} {'KV B/tok':>10}"
    )
    for r in rows:
        mark = "*" if r["params_note"] else " "
        approx = "~" if r["approximate"] else " "
        pub_active = f"{r['published_active'] / 1e9:9.1f}B" if r["published_active"] else ""
        click.echo(
            f"{r['name']:17}{approx} {r['published_params'] / 1e9:9.1f}B "
            f"{r['params'] / 1e9:9.1f}B{mark}{r['active_params'] / 1e9:8.1f}B {pub_active:>10} "
            f"{r['flops_per_token'] / 1e9:10.1f} {r['kv_bytes_per_token']:>10,}"
        )
    for r in rows:  # why computed and published parameters differ, where the entry says
        if r["params_note"]:
            click.echo(f"* {r['name']}: {r['params_note']}")
    for r in rows:  # what stays approximate, and why
        for item in r["approximate"]:
            click.echo(f"~ {r['name']}: {item}")


@zoo.command()
@click.argument("name")
@SIZE
@click.option("--no-text", is_flag=True, help="Statistics and sources only.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object: the fields of `zoo list --json` for this size, sources, notes "
    'and (unless --no-text) the IR text as "ir".',
)
def show(name: str, size: Size | None, no_text: bool, as_json: bool) -> None:
    """Show NAME's graph (IR text), statistics, survey row and sources (default: published size)."""
    entry = model_zoo.get(name)
    graph = model_zoo.build(entry.name, size=size or "published")
    if as_json:
        c = cost(graph)
        row = {
            **model_row(entry.name, c),
            "size": size or "published",
            "nodes": len(graph.nodes),
            "sources": dict(entry.sources),
            "notes": list(entry.notes),
        }
        if not no_text:
            row["ir"] = str(graph)
        click.echo(json.dumps(row, indent=1))
        return
    if not no_text:
        click.echo(str(graph), nl=False)
    click.echo(format_cost(graph.name, len(graph.nodes), cost(graph)))
    click.echo(f"# published params  {entry.published_params:,} (survey: {entry.survey_params:,})")
    click.echo(f"# survey claims     {', '.join(entry.claims)}")
    by_source: dict[str, list[str]] = {}
    for key, source in entry.sources.items():
        by_source.setdefault(source, []).append(key)
    for source, keys in by_source.items():
        click.echo(f"# source ({', '.join(keys)}): {source}")
    for note in entry.notes:
        click.echo(f"# note: {note}")
    if entry.params_note:
        click.echo(f"# params note: {entry.params_note}")


@zoo.command()
@click.argument("name")
@SIZE
@output_folder_option("Graph folder to write", dest="output")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the random weights.",
)
@force_option
def build(name: str, size: Size | None, output: str, seed: int, force: bool) -> None:
    """Save NAME as a graph folder: the tiny twin with seeded random weights (default), or the
    published architecture as structure and cost only (no weights)."""
    replaced = check_output_option(output, [], force)
    graph = model_zoo.build(name, size=size or "tiny", seed=seed)
    save(graph, output, overwrite=force)
    report_replaced(output, replaced)
    what = "weights: seeded random" if graph.weights is not None else "structure only, no weights"
    click.echo(f"wrote {output} ({graph.name}, {len(graph.nodes)} nodes, {what})")
