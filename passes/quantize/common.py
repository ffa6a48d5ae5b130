"""What every quantization method shares: which weights it quantizes, and retyping the graph.

Quantized: every weight an op reads in its stored dtype (the registry's `stored_dtype` trait:
linear weights, embedding tables, MoE expert stacks) of rank >= 2, unless a `skip` glob names
it or some other op reads it in float. Everything else stays float: norms, biases, routers
(`moe_router` reads its weight in float), rotary and ALiBi tables (computed, not weights),
relative-position bias tables (T5) and MLA's kv_b (`latent_attention` reads it in float).
The LM head (the linear that computes the logits) gets 8 bits when the rest gets fewer:
ORT's int8-activation path flips argmax on outlier-heavy heads (docs/onnxruntime.md §5).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

import numpy as np

from irgraph.errors import IrgraphError, PassError
from irgraph.ir import Graph
from irgraph.lm import LOGITS, LOGITS_LAST
from irgraph.quant import QuantSpec, stored_names
from irgraph.registry import get_op
from irgraph.retype import retype_params
from irgraph.types import TensorType
from irgraph.weights import WeightStore

HEAD_BITS = 8  # the LM head's default floor (quantize's head_bits)


def parse_skip(skip: str, graph: Graph, pass_name: str = "quantize") -> list[str]:
    """The globs of `skip` ("lm_head.weight,*.router.*"); each must match some parameter."""
    globs = [g.strip() for g in skip.split(",") if g.strip()]
    for g in globs:
        if not any(fnmatch.fnmatchcase(name, g) for name in graph.params):
            raise PassError(
                f"skip pattern {g!r} of pass {pass_name} matches no parameter",
                expected='globs over parameter names, e.g. skip="lm_head.weight,*.mlp.*"',
                got=", ".join(list(graph.params)[:4]) + (", ..." if len(graph.params) > 4 else ""),
            )
    return globs


def candidates(graph: Graph) -> list[str]:
    """Parameters read only in stored-dtype slots and of rank >= 2, in parameter order."""
    stored_only: dict[str, bool] = {}
    for node in graph.nodes:
        opdef = get_op(node.op)
        slots = {opdef.slot(name) for name in opdef.stored_dtype}
        for i, v in enumerate(node.inputs):
            if v is not None and v.param is not None:
                ok = i in slots and v.type.rank >= 2
                stored_only[v.param] = stored_only.get(v.param, True) and ok
    return [name for name in graph.params if stored_only.get(name)]


def lm_head(graph: Graph) -> str | None:
    """The weight of the linear that computes the logits (through casts, scales, softcaps)."""
    producers = graph.producers()
    for out in (LOGITS, LOGITS_LAST):
        v = graph.outputs.get(out)
        for _ in range(8):  # logits = linear, possibly followed by a few elementwise ops
            node = producers.get(v) if v is not None else None
            if node is None:
                break
            if node.op == "linear":
                w = node.inputs[1]
                return w.param if w is not None else None
            v = node.inputs[0]
    return None


def select(graph: Graph, bits: int, skip: str, head_bits: int = HEAD_BITS) -> dict[str, int]:
    """Parameter name -> bits of every weight to quantize (the LM head max(bits, head_bits));
    PassError if one is already quantized."""
    globs = parse_skip(skip, graph)
    head = lm_head(graph)
    chosen: dict[str, int] = {}
    for name in candidates(graph):
        if any(fnmatch.fnmatchcase(name, g) for g in globs):
            continue
        t = graph.params[name].type
        if t.quant is not None:
            raise PassError(
                f"weight @{name} is already quantized ({t.dtype}<{t.quant}>)",
                expected="float weights (quantize once, from the float graph)",
                got=str(t),
            )
        if not t.dtype.is_float:
            continue
        chosen[name] = max(bits, head_bits) if name == head else bits
    return chosen


def retype(
    graph: Graph,
    specs: Mapping[str, QuantSpec],
    arrays: Mapping[str, Mapping[str, np.ndarray]] | None,
) -> Graph:
    """A new graph whose params in `specs` are quantized, stored as `arrays` (name -> suffix ->).

    Consumers are re-inferred; where a result's dtype changes (an embedding of a quantized table
    yields f32), a cast back to the old dtype keeps every later value as it was.
    """
    types = {
        name: TensorType(spec.storage, graph.params[name].type.shape, spec)
        for name, spec in specs.items()
    }
    try:
        quantized = retype_params(graph, types)
    except IrgraphError as e:
        raise PassError(f"a node cannot read a quantized weight: {e.message}") from None
    weights = None
    if graph.weights is not None and arrays is not None:
        kept = {
            n: graph.weights[n]
            for name, v in graph.params.items()
            if name not in specs
            for n in stored_names(name, v.type.quant)
        }
        for name, stored in arrays.items():
            kept.update({name + suffix: a for suffix, a in stored.items()})
        weights = WeightStore(kept)
    return Graph(  # a new graph even when nothing changed: the caller sets its weights
        name=quantized.name,
        inputs=dict(quantized.inputs),
        params=dict(quantized.params),
        nodes=list(quantized.nodes),
        outputs=dict(quantized.outputs),
        meta=dict(quantized.meta),
        weights=weights,
    )
