"""`irgraph inspect PATH`: the text form, and parameter / FLOP / KV-cache statistics.

PATH (and `--compare B`) is a saved graph, an artifact or a zoo name (published size unless
`--size tiny`). `--memory 8GiB` adds the longest context whose weights and KV cache (as
stored) fit at batch 1; `--compare B` prints A and B side by side instead of the IR text.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import click

from irgraph import model_zoo
from irgraph.analysis import Cost, QuantizedWeights, cost, max_context, quantized_weights
from irgraph.cli.view_cmd import read_graph
from irgraph.ir import Graph
from irgraph.quant import ACT_NONE
from irgraph.serialize import load
from irgraph.sparsity import PatternSummary, summary

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def parse_memory(text: str) -> int:
    """'8GiB', '512MiB', '16GB' or a number of bytes -> bytes; BadParameter naming --memory."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise click.BadParameter(
            f"expected a positive size such as 8GiB, 512MiB or 16GB, got {text!r}",
            param_hint="--memory",
        )
    return int(float(m.group(1)) * _UNITS[unit])


@click.command()
@click.argument("path")
@click.option(
    "--context",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Context length for FLOPs per token.",
)
@click.option("--json", "as_json", is_flag=True, help="Print statistics as JSON (no IR text).")
@click.option("--no-text", is_flag=True, help="Statistics only.")
@click.option(
    "--compare", "against", metavar="B", help="A second graph, artifact or zoo name, side by side."
)
@click.option(
    "--memory",
    metavar="SIZE",
    help="Memory (8GiB, 512MiB, 16GB): the longest context that fits at batch 1.",
)
@click.option(
    "--size",
    type=click.Choice(model_zoo.SIZES),
    default=None,
    help="Zoo names: published (default) or the tiny twin.",
)
def inspect(
    path: str,
    context: int,
    as_json: bool,
    no_text: bool,
    against: str | None,
    memory: str | None,
    size: str | None,
) -> None:
    """Show the graph at PATH (a saved graph, an artifact or a zoo name): IR text, stats, cost."""
    budget = None if memory is None else parse_memory(memory)
    if size is not None and not any(p in model_zoo.names() for p in (path, against)):
        raise click.BadParameter("applies to zoo model names, not folders", param_hint="--size")
    graph = read(path, size)
    if against is not None:
        other = read(against, size)
        a, b = (graph_stats(g, context, budget) for g in (graph, other))
        if as_json:
            click.echo(json.dumps({"a": a, "b": b}, indent=2))
        else:
            click.echo(format_compare(a, b, memory))
        return
    stats = graph_stats(graph, context, budget)
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    if not no_text:
        click.echo(str(graph), nl=False)
    c = cost(graph, context=context)
    click.echo(format_cost(graph.name, len(graph.nodes), c))
    if budget is not None:
        click.echo(f"#   longest context   {_context(stats['max_context'])} in {memory} at batch 1")
    quant = quantized_weights(graph)
    if quant:
        click.echo(format_quantized(quant))
    sparse = summary(graph)
    if sparse:
        click.echo(format_sparsity(sparse))
    if stats["int8_activation_linears"]:
        click.echo(
            f"#   int8 activations per token (dynamic): {stats['int8_activation_linears']} linears"
        )


def _act_i8(graph: Graph) -> int:
    return sum(1 for n in graph.nodes if n.attrs.get("act_quant", ACT_NONE) != ACT_NONE)


def read(path: str, size: str | None) -> Graph:
    """A saved graph or artifact folder, else a zoo name at `size` (view's reader)."""
    if Path(path).is_dir():
        return load(path)
    if path not in model_zoo.names() and (Path(path).exists() or "/" in path):
        what = "is a file" if Path(path).exists() else "does not exist"
        raise click.BadParameter(f"Directory {path!r} {what}.", param_hint="'PATH'")
    return read_graph(path, size)


def graph_stats(graph: Graph, context: int, memory: int | None) -> dict[str, Any]:
    """What inspect --json prints for one graph (with `max_context` when `memory` is given)."""
    stats = {
        "name": graph.name,
        "nodes": len(graph.nodes),
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        **dataclasses.asdict(cost(graph, context=context)),
        "quantized": [dataclasses.asdict(q) for q in quantized_weights(graph)],
        "sparsity": [dataclasses.asdict(p) for p in summary(graph)],
        "int8_activation_linears": _act_i8(graph),
    }
    if memory is not None:
        stats["memory"] = memory
        stats["max_context"] = max_context(graph, memory)
    return stats


def _context(tokens: int | None) -> str:
    return "unbounded (the cache does not grow)" if tokens is None else f"{tokens:,} tokens"


def format_compare(a: dict[str, Any], b: dict[str, Any], memory: str | None) -> str:
    """A and B side by side, with B/A."""
    rows = [
        ("params", "params"),
        ("weight bytes", "weight_bytes"),
        ("FLOPs/token decode", "decode_flops_per_token"),
        ("FLOPs/token prefill", "prefill_flops_per_token"),
        ("KV bytes/token", "kv_stored_bytes_per_token"),
    ]
    if memory is not None:
        rows.append((f"context in {memory}", "max_context"))
    lines = [f"# {'':<22} {a['name']:>22} {b['name']:>22} {'B/A':>8}"]
    for label, key in rows:
        x, y = a[key], b[key]
        ratio = (
            f"{y / x:.4g}"
            if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x
            else ""
        )
        shown = [f"{v:,.0f}" if isinstance(v, (int, float)) else "unbounded" for v in (x, y)]
        lines.append(f"# {label:<22} {shown[0]:>22} {shown[1]:>22} {ratio:>8}")
    lines.append(f"# (KV bytes as stored; context at batch 1, context {a['context']} for FLOPs)")
    return "\n".join(lines)


def format_cost(name: str, nodes: int, c: Cost) -> str:
    return "\n".join(
        [
            f"# {name}: {nodes} nodes",
            f"#   params            {c.params:,} ({c.active_params:,} active per token)",
            f"#   weights           {c.weight_bytes / 2**20:,.1f} MiB",
            f"#   FLOPs/token       {c.prefill_flops_per_token:,.0f} prefill, "
            f"{c.decode_flops_per_token:,.0f} decode (context {c.context})",
            f"#   KV cache/token    {c.kv_bytes_per_token:,} bytes (16-bit), "
            f"{c.kv_stored_bytes_per_token:,} as stored"
            + (f" (at most {c.kv_max_tokens:,} tokens)" if c.kv_max_tokens else ""),
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
