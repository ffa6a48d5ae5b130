"""paged-kv(block=16): the KV cache as a pool of fixed-size pages with a block table (exact).

Every cached causal `attention` becomes `paged_attention` (irgraph/ops/paged_attention.py):
`past_key_values.{i}.key/.value` become page pools [pages, block, kv_heads, head_dim] shared
by all rows, and the graph takes `block_table` [batch, blocks] and `cache_lens` [batch]
(lm.py) instead of `attention_mask`: rows of different lengths decode in one batch with no
padding, each reading only its own pages. The generate loops allocate pages as rows grow
(runtimes/generate.py). Logits are those of the concat cache (checked end to end).

Applies when every cached attention is plain causal (no window, bias, prefix, stride or
softcap-free restriction: softcap is kept) with its own cache, the mask feeds nothing else,
and the cache is concat bnsh; otherwise the graph is left unchanged with a note naming the
layer, or refused (a layout or storage another pass chose).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from irgraph.dtypes import DType
from irgraph.ir import Graph, Value
from irgraph.kvcache import contract_of, is_scale
from irgraph.lm import BLOCK_TABLE, CACHE_LENS, PAST_PREFIX, present_name
from irgraph.passes.cache_sites import Site, cache_names, replace_cached, require_concat_bnsh
from irgraph.passes.context import PassContext
from irgraph.passes.equivalence import END_TO_END
from irgraph.passes.graphs import GraphIndex
from irgraph.passes.manager import EXACT, Pass, PassResult, option, register_pass
from irgraph.types import Sym, TensorType

MASK = "attention_mask"


@register_pass
@dataclass(frozen=True)
class PagedKv(Pass):
    name = "paged-kv"
    kind = EXACT
    summary = "store the KV cache in fixed-size pages addressed through a block table"
    check_mode: ClassVar[str] = END_TO_END
    block: int = option(16, min=1, doc="tokens per page")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        contract = contract_of(graph.meta)
        if contract.storage == "paged":
            return PassResult(graph, False, f"the cache is already paged ({contract.block})")
        require_concat_bnsh(contract, self.name, "kv-layout and sliding-window-cache")
        sites, why = _sites(graph)
        if why:
            return PassResult(graph, False, f"nothing to page: {why}")
        batch = graph.inputs[MASK].type.shape[0]
        caches = {n for _, names in sites for n in names}
        inputs: dict[str, Value] = {}
        for name, value in graph.inputs.items():
            if name in caches:
                _, h, _, d = value.type.shape
                shape = (Sym.of("pages"), self.block, h, d)
                value = Value(value.type.with_shape(shape), hint=value.hint)
            if name != MASK:
                inputs[name] = value
        table = Value(TensorType(DType.i64, (batch, Sym.of("blocks"))), hint=BLOCK_TABLE)
        lens = Value(TensorType(DType.i64, (batch,)), hint=CACHE_LENS)
        inputs[BLOCK_TABLE], inputs[CACHE_LENS] = table, lens
        result = replace_cached(
            graph,
            sites,
            inputs,
            "paged_attention",
            lambda node: (table, lens),
            lambda node: {"scale": node.attrs["scale"], "softcap": node.attrs["softcap"]},
            dataclasses.replace(contract, storage="paged", block=self.block),
        )
        return PassResult(
            result, True, f"{len(sites)} layers: pages of {self.block} tokens, one block table"
        )


def _sites(graph: Graph) -> tuple[list[Site], str]:
    """Every cached attention with its cache input names, or why the graph cannot be paged."""
    index = GraphIndex(graph)
    by_value = {v: n for n, v in graph.inputs.items() if n.startswith(PAST_PREFIX)}
    if any(is_scale(n) or n.endswith(".latent") for n in by_value.values()):
        return [], "a quantized or latent cache (run paged-kv first; latent caches stay concat)"
    mask = graph.inputs.get(MASK)
    if mask is None:
        return [], "the graph has no attention_mask to replace"
    sites: list[Site] = []
    for node in graph.nodes:
        if node.op != "attention" or node.inputs[3] is None:
            continue
        where = index.describe(node)
        a = node.attrs
        names = cache_names(node, by_value)
        extra = [node.inputs[i] for i in (6, 7) if i < len(node.inputs)]
        if not a["causal"] or a["window"] or a["stride"] or any(x is not None for x in extra):
            return [], f"{where} is not plain causal (window, bias, prefix, stride)"
        if names is None or any(
            graph.outputs.get(present_name(n)) is not node.outputs[1 + i]
            or len(index.users_of(graph.inputs[n])) != 1
            for i, n in enumerate(names)
        ):
            return [], f"{where}: its cache is not a graph input and output of its own"
        sites.append((node, names))
    if not sites:
        return [], "the graph has no cached attention"
    others = [u for u in index.users_of(mask) if u not in {n for n, _ in sites}]
    if others:
        return [], f"attention_mask also feeds {index.describe(others[0])}"
    return sites, ""
