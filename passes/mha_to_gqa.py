"""mha-to-gqa(kv_heads=N): fewer KV heads by mean-pooling each group's K/V projections.

Ainslie et al. 2023 (GQA): the KV heads of each group of heads/N query heads are
replaced by their mean (a model with fewer KV heads already is first expanded, so
any N dividing the head count works). The model changes and needs fine-tuning
(`irgraph train`), so the pass is arch-change; the KV cache shrinks by
kv_heads_before / N. Checked end to end (the cache shapes change).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from irgraph.errors import PassError
from irgraph.ir import Graph
from irgraph.passes.context import PassContext
from irgraph.passes.equivalence import END_TO_END
from irgraph.passes.kv_heads import (
    NO_SITES,
    HeadsTransform,
    Site,
    find_sites,
    mean_pool_heads,
    set_kv_heads,
)
from irgraph.passes.manager import ARCH_CHANGE, Pass, PassResult, option, register_pass


@register_pass
@dataclass(frozen=True)
class MhaToGqa(Pass):
    name = "mha-to-gqa"
    kind = ARCH_CHANGE
    summary = "mean-pool each group's K/V projection heads into kv_heads shared heads"
    check_mode: ClassVar[str] = END_TO_END
    kv_heads: int = option(1, min=1, doc="KV heads after the pass (1: multi-query); divides heads")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        sites, reasons = find_sites(graph)
        for site in sites:
            if site.heads % self.kv_heads:
                raise PassError(
                    f"kv_heads={self.kv_heads} does not divide the {site.heads} query heads",
                    expected=f"a divisor of {site.heads}",
                    got=self.kv_heads,
                    where=f"layer {site.layer}",
                )
        changing = [s for s in sites if s.kv_heads != self.kv_heads]
        if not changing:
            why = "; ".join(reasons[:2]) or (
                f"every cached attention has {self.kv_heads} KV heads" if sites else NO_SITES
            )
            return PassResult(graph, False, f"nothing to pool: {why}")
        out = set_kv_heads(graph, changing, self._plan)
        counts = sorted({f"{s.kv_heads} -> {self.kv_heads}" for s in changing})
        note = f"{len(changing)} layers: KV heads {', '.join(counts)} (mean-pooled)"
        if reasons:
            note += f"; left {len(reasons)}: {reasons[0]}"
        return PassResult(out, True, note)

    def _plan(self, site: Site) -> tuple[int, HeadsTransform]:
        return self.kv_heads, mean_pool_heads(site.heads, site.kv_heads, self.kv_heads)
