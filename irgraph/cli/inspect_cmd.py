"""`irgraph inspect PATH`: the text form, and parameter / FLOP / KV-cache statistics."""

from __future__ import annotations

import dataclasses
import json

import click

from irgraph.analysis import Cost, QuantizedWeights, cost, quantized_weights
from irgraph.quant import ACT_NONE
from irgraph.serialize import load
from irgraph.sparsity import PatternSummary, summary


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
    quant = quantized_weights(graph)
    sparse = summary(graph)
    act_i8 = sum(1 for n in graph.nodes if n.attrs.get("act_quant", ACT_NONE) != ACT_NONE)
    stats = {
        "name": graph.name,
        "nodes": len(graph.nodes),
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        **dataclasses.asdict(c),
        "quantized": [dataclasses.asdict(q) for q in quant],
        "sparsity": [dataclasses.asdict(p) for p in sparse],
        "int8_activation_linears": act_i8,
    }
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    if not no_text:
        click.echo(str(graph), nl=False)
    click.echo(format_cost(graph.name, len(graph.nodes), c))
    if quant:
        click.echo(format_quantized(quant))
    if sparse:
        click.echo(format_sparsity(sparse))
    if act_i8:
        click.echo(f"#   int8 activations per token (dynamic): {act_i8} linears")


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


def format_quantized(kinds: list[QuantizedWeights]) -> str:
    """One line per quantization spec: `i4<g32,sym,f16>  12 weights  3.0 MiB -> 0.9 MiB`."""
    lines = ["#   quantized weights (bytes before -> after)"]
    for q in kinds:
        lines.append(
            f"#     {q.spec:<20} {q.count:>4} weights  {q.params:,} values  "
            f"{q.bytes_before / 2**20:,.2f} MiB -> {q.bytes_after / 2**20:,.2f} MiB"
        )
    return "\n".join(lines)


def format_sparsity(patterns: list[PatternSummary]) -> str:
    """One line per pruning pattern (irgraph/sparsity.py's record), recorded vs stored zeros."""
    lines = ["#   pruned weights (stored dense: zeros save no bytes)"]
    for p in patterns:
        zeros = "" if p.measured is None else f", {p.measured:.1%} zeros stored"
        lines.append(
            f"#     {p.pattern:<20} {p.count:>4} weights  {p.params:,} values  "
            f"sparsity {p.recorded:.1%} recorded{zeros}"
        )
    return "\n".join(lines)
