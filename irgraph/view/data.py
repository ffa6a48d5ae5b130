"""The data `irgraph view` draws: nodes, edges, layer blocks, per-node costs and totals.

Costs come from `irgraph.analysis` (`node_costs` per node, `cost` for the totals, the
figures `irgraph inspect --json` prints), never recomputed here. Nodes are grouped into
blocks by the layer prefix of the parameters they read (`layers.3.attn.q.weight` ->
`layers.3`); a node without parameters joins the block of its latest producer, so a layer's
attention, residual adds and reshapes fold together with its linears.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from irgraph.analysis import cost, node_costs, quantized_weights
from irgraph.ir import Graph, Node, Value
from irgraph.printer import Namer, format_attr, node_line
from irgraph.view.diff import REMOVED, Diff

_LAYER = re.compile(r"^((?:[A-Za-z_][\w-]*\.)+?\d+)\.")  # shortest prefix ending in a number

METRICS = {  # key in each node's "cost" -> label
    "decode_flops": "FLOPs/token (decode)",
    "prefill_flops": "FLOPs/token (prefill)",
    "weight_bytes": "weight bytes",
    "kv_bytes_per_token": "KV-cache bytes/token",
}


def layer_of(param: str) -> str | None:
    """'layers.3.attn.q.weight' -> 'layers.3'; 'embed.weight' -> None."""
    m = _LAYER.match(param)
    return m.group(1) if m else None


def _blocks(nodes: list[Node], producer: dict[Value, int]) -> list[str | None]:
    blocks: list[str | None] = []
    for node in nodes:
        block = next((layer_of(v.param) for v in node.inputs if v is not None and v.param), None)
        if not any(v is not None and v.param for v in node.inputs):
            sources = [producer[v] for v in node.inputs if v is not None and v in producer]
            block = blocks[max(sources)] if sources else None
        blocks.append(block)
    return blocks


def _node_row(
    node: Node, nid: str, name: Namer, block: str | None, costs: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": nid,
        "op": node.op,
        "block": block,
        "text": node_line(node, name),
        "types": [str(v.type) for v in node.outputs],
        "attrs": {k: format_attr(v) for k, v in node.attrs.items()},
        "params": [[v.param, str(v.type)] for v in node.inputs if v is not None and v.param],
        "cost": costs,
    }


def view_data(
    graph: Graph,
    *,
    context: int = 4096,
    diff: Diff | None = None,
    before: Graph | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Everything the page needs, as JSON-ready data; `diff` (against `before`) marks changes."""
    c = cost(graph, context=context)
    per_node = node_costs(graph, context=context)
    name = Namer(graph)
    producer = {v: i for i, n in enumerate(graph.nodes) for v in n.outputs}
    blocks = _blocks(graph.nodes, producer)
    source: dict[Value, str] = {v: f"n{i}" for v, i in producer.items()}
    source.update({v: f"i:{k}" for k, v in graph.inputs.items()})
    nodes = []
    for i, (node, nc) in enumerate(zip(graph.nodes, per_node)):
        row = _node_row(node, f"n{i}", name, blocks[i], dataclasses.asdict(nc))
        row["in"] = [source[v] for v in node.inputs if v is not None and v in source]
        if diff is not None and node in diff.status:
            row["status"] = diff.status[node]
        nodes.append(row)
    if diff is not None and before is not None:
        nodes += _removed_rows(before, diff, source)
    consumers: dict[str, set[str | None]] = {}
    for row in nodes:
        for src in row["in"]:
            consumers.setdefault(src, set()).add(row["block"])
    inputs = []
    for k, v in graph.inputs.items():
        users = consumers.get(f"i:{k}", set())
        inputs.append(
            {
                "id": f"i:{k}",
                "name": k,
                "type": str(v.type),
                "block": next(iter(users)) if len(users) == 1 else None,
            }
        )
    outputs = [
        {
            "id": f"o:{k}",
            "name": k,
            "in": [source[v]] if v in source else [],
            "block": blocks[producer[v]] if v in producer else None,
        }
        for k, v in graph.outputs.items()
    ]
    totals = {
        "nodes": len(graph.nodes),
        **dataclasses.asdict(c),
        "quantized": [dataclasses.asdict(q) for q in quantized_weights(graph)],
    }
    return {
        "title": title or graph.name,
        "name": graph.name,
        "totals": totals,
        "metrics": METRICS,
        "inputs": inputs,
        "outputs": outputs,
        "nodes": nodes,
        "diff": None if diff is None else {"mode": diff.mode, **diff.counts()},
    }


def _removed_rows(before: Graph, diff: Diff, source: dict[Value, str]) -> list[dict[str, Any]]:
    """The removed nodes of `before`, wired to what their inputs became in the drawn graph."""
    name = Namer(before)
    producer = {v: i for i, n in enumerate(before.nodes) for v in n.outputs}
    blocks = _blocks(before.nodes, producer)
    position = {n: i for i, n in enumerate(before.nodes)}
    removed_src = {v: f"r{k}" for k, n in enumerate(diff.removed) for v in n.outputs}
    zero = {key: 0 for key in METRICS}
    rows = []
    for k, node in enumerate(diff.removed):
        row = _node_row(node, f"r{k}", name, blocks[position[node]], zero)
        ins = []
        for v in node.inputs:
            if v is None or v.param:
                continue
            if v in removed_src:
                ins.append(removed_src[v])
            elif diff.value_map.get(v) in source:
                ins.append(source[diff.value_map[v]])
        row["in"] = ins
        row["status"] = REMOVED
        rows.append(row)
    return rows
