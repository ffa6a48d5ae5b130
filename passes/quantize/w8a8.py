"""W8A8 (SmoothQuant's quantization, Xiao et al. 2022): int8 weights and int8 activations.

Every linear weight (read by `linear` nodes only) becomes i8<ch,sym,SCALE>: one symmetric
scale per output channel, rounded to nearest (rtn.py, irgraph/quant.py's grid). Each linear that
reads it gets `act_quant="i8_token"`: its input is quantized to int8 per token at run time
(dynamic: no calibration, one scale per row), the product is an integer one rescaled by both
scales. The numerics are irgraph/quant.py's `linear_i8_token`; per-token scales keep a token's
result independent of the other tokens, so prefill and cached decode agree.

Stays float: the LM head (as in SmoothQuant's reference, which quantizes the decoder layers'
linears only; an int8-activation head flips argmax on outlier-heavy models, docs/
onnxruntime.md §5), embedding tables and MoE expert stacks (not read by a `linear`), and what
every quantize method keeps float (common.py). Run `smoothquant(alpha=0.5)` first to move
activation outliers into the weights.
"""

from __future__ import annotations

from dataclasses import replace

from irgraph.dtypes import DType
from irgraph.ir import Graph, Node
from irgraph.passes.context import PassContext
from irgraph.passes.quantize import rtn
from irgraph.passes.quantize.common import lm_head, retype, select
from irgraph.quant import ACT_I8_TOKEN, QuantSpec


def linear_only(graph: Graph, names: list[str]) -> list[str]:
    """The params of `names` that only `linear` nodes read, as their weight."""
    other: set[str] = set()
    for node in graph.nodes:
        for i, v in enumerate(node.inputs):
            if v is not None and v.param is not None and not (node.op == "linear" and i == 1):
                other.add(v.param)
    return [name for name in names if name not in other]


def quantize_graph(
    graph: Graph, scale_dtype: DType, skip: str, ctx: PassContext
) -> tuple[Graph, list[str], list[str]]:
    """(the W8A8 graph, the quantized weights, notes for people)."""
    head = lm_head(graph)
    chosen = list(select(graph, 8, skip))  # refuses a weight that is already quantized
    names = [n for n in linear_only(graph, chosen) if n != head]
    notes = []
    if head in chosen:
        notes.append(f"LM head @{head} stays float")
    others = len(chosen) - len(names) - (head in chosen)
    if others:
        notes.append(f"{others} weights not read by linears only (embeddings, experts) stay float")
    spec = QuantSpec(8, 0, True, scale_dtype)
    specs = dict.fromkeys(names, spec)
    arrays = None
    if graph.weights is not None:
        arrays = {}
        for i, name in enumerate(names):
            ctx.progress(i, len(names), name)
            arrays[name] = rtn.quantize_weight(graph.weight(name), spec)
        ctx.progress(len(names), len(names), "")
    retyped = retype(graph, specs, arrays)
    nodes = [
        Node(n.op, n.inputs, n.outputs, {**n.attrs, "act_quant": ACT_I8_TOKEN})
        if n.op == "linear" and n.inputs[1] is not None and n.inputs[1].param in specs
        else n
        for n in retyped.nodes
    ]
    return replace(retyped, nodes=nodes), names, notes
