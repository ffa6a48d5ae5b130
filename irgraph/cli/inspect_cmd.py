"""`irgraph inspect PATH`: the text form, and parameter / FLOP / KV-cache statistics."""

from __future__ import annotations

import dataclasses
import json

import click

from irgraph.analysis import Cost, cost
from irgraph.serialize import load


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--context",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Context length for FLOPs per token.",
)
@click.option("--json", "as_json", is_flag=True, help="Print statistics as JSON (no IR text).")
@click.option("--no-text", is_flag=True, help="Statistics only.")
def inspect(path: str, context: int, as_json: bool, no_text: bool) -> None:
    """Show the graph at PATH (a saved graph folder): IR text, stats and cost."""
    graph = load(path)
    c = cost(graph, context=context)
    stats = {
        "name": graph.name,
        "nodes": len(graph.nodes),
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        **dataclasses.asdict(c),
    }
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    if not no_text:
        click.echo(str(graph), nl=False)
    click.echo(format_cost(graph.name, len(graph.nodes), c))


def format_cost(name: str, nodes: int, c: Cost) -> str:
    return "\n".join(
        [
            f"# {name}: {nodes} nodes",
            f"#   params            {c.params:,} ({c.active_params:,} active per token)",
            f"#   weights           {c.weight_bytes / 2**20:,.1f} MiB",
            f"#   FLOPs/token       {c.prefill_flops_per_token:,.0f} prefill, "
            f"{c.decode_flops_per_token:,.0f} decode (context {c.context})",
            f"#   KV cache/token    {c.kv_bytes_per_token:,} bytes (16-bit)",
        ]
    )
