"""sliding-window-cache: windowed attention keeps a ring buffer of `window` slots (exact).

Every cached causal `attention` with a window (Mistral's sliding window, GPT-3's banded
layers when all are banded) becomes `ring_attention` (irgraph/ops/ring_attention.py): its
`past_key_values.{i}.key/.value` inputs are retyped to [batch, kv_heads, window, head_dim] and
`present.*` returns the ring after this call's writes, so the cache stops growing; the
contract (irgraph/kvcache.py) says storage ring with that window, which `inspect` reports as
the cache's bound. Keys outside the window were invisible anyway, so the logits are those of
the unbounded cache (checked end to end, on sequences longer than the window).

No options: the window is the attention's own. Cached attention without a window (GPT-3's
dense layers between its banded ones) keeps its growing cache; the windowed layers must share
one window (the contract states one), and a windowed layer with bias, prefix or strided masks
leaves the graph unchanged with a note saying which layer stopped it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from irgraph.ir import Graph, Value
from irgraph.kvcache import contract_of, is_scale
from irgraph.lm import PAST_PREFIX, present_name
from irgraph.passes.cache_sites import (
    Site,
    cache_names,
    optional_input,
    replace_cached,
    require_concat_bnsh,
)
from irgraph.passes.context import PassContext
from irgraph.passes.equivalence import END_TO_END
from irgraph.passes.graphs import GraphIndex
from irgraph.passes.manager import EXACT, Pass, PassResult, register_pass


@register_pass
@dataclass(frozen=True)
class SlidingWindowCache(Pass):
    name = "sliding-window-cache"
    kind = EXACT
    summary = "windowed attention keeps a ring-buffer KV cache of window slots"
    check_mode: ClassVar[str] = END_TO_END

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        contract = contract_of(graph.meta)
        if contract.storage == "ring":
            return PassResult(graph, False, f"the cache is already a ring of {contract.window}")
        require_concat_bnsh(contract, self.name, "kv-layout, paged-kv and quantize-kv")
        sites, why = _sites(graph)
        if why:
            return PassResult(graph, False, f"nothing to bound: {why}")
        window = sites[0][0].attrs["window"]
        inputs = dict(graph.inputs)
        for name in (n for _, names in sites for n in names):
            b, h, _, d = graph.inputs[name].type.shape
            ring = graph.inputs[name].type.with_shape((b, h, window, d))
            inputs[name] = Value(ring, hint=graph.inputs[name].hint)
        result = replace_cached(
            graph,
            sites,
            inputs,
            "ring_attention",
            lambda node: (optional_input(node, 5),),
            lambda node: {
                "window": window,
                "scale": node.attrs["scale"],
                "softcap": node.attrs["softcap"],
            },
            dataclasses.replace(contract, storage="ring", window=window),
        )
        cached = sum(n.op == "attention" and n.inputs[3] is not None for n in graph.nodes)
        note = f"{len(sites)} layers: a ring of {window} slots per cache"
        if cached > len(sites):
            note += f"; {cached - len(sites)} unwindowed layers keep growing caches"
        return PassResult(result, True, note)


def _sites(graph: Graph) -> tuple[list[Site], str]:
    """Every cached attention with its cache input names, or why the graph cannot take a ring."""
    index = GraphIndex(graph)
    by_value = {v: n for n, v in graph.inputs.items() if n.startswith(PAST_PREFIX)}
    if any(is_scale(n) or n.endswith(".latent") for n in by_value.values()):
        return [], "a quantized or latent cache (run sliding-window-cache first)"
    sites: list[Site] = []
    for node in graph.nodes:
        if node.op != "attention" or node.inputs[3] is None:
            continue
        where = index.describe(node)
        a = node.attrs
        names = cache_names(node, by_value)
        if not a["window"]:
            continue  # a dense layer (GPT-3 alternates them with banded ones) keeps its cache
        if (
            not a["causal"]
            or a["stride"]
            or any(optional_input(node, i) is not None for i in (6, 7))
        ):
            return [], f"{where} is not plain causal (bias, prefix, stride or bidirectional)"
        if optional_input(node, 5) is None:
            return [], f"{where} has no key mask to count positions with"
        if names is None or any(
            graph.outputs.get(present_name(n)) is not node.outputs[1 + i]
            or len(index.users_of(graph.inputs[n])) != 1
            for i, n in enumerate(names)
        ):
            return [], f"{where}: its cache is not a graph input and output of its own"
        if sites and a["window"] != sites[0][0].attrs["window"]:
            return [], (
                f"{where} has window {a['window']}, {index.describe(sites[0][0])} "
                f"{sites[0][0].attrs['window']} (the contract states one)"
            )
        sites.append((node, names))
    if not sites:
        return [], "no cached attention has a window"
    return sites, ""
