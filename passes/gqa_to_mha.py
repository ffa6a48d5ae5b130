"""gqa-to-mha: grouped- or multi-query attention expanded to one KV head per query head (exact).

Each KV head's projection rows are repeated for the query heads it serves, as the
attention itself repeats the head, so the logits do not change; the KV cache grows
by heads/kv_heads. The cache shapes change, so --check runs end to end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from irgraph.ir import Graph
from irgraph.passes.context import PassContext
from irgraph.passes.equivalence import END_TO_END
from irgraph.passes.kv_heads import NO_SITES, find_sites, repeat_heads, set_kv_heads
from irgraph.passes.manager import EXACT, Pass, PassResult, register_pass


@register_pass
@dataclass(frozen=True)
class GqaToMha(Pass):
    name = "gqa-to-mha"
    kind = EXACT
    summary = "repeat each KV head's projection for its query heads: multi-head attention"
    check_mode: ClassVar[str] = END_TO_END

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        sites, reasons = find_sites(graph)
        grouped = [s for s in sites if s.kv_heads < s.heads]
        if not grouped:
            why = "; ".join(reasons[:2]) or (
                "every cached attention has a KV head per query head" if sites else NO_SITES
            )
            return PassResult(graph, False, f"nothing to expand: {why}")
        out = set_kv_heads(graph, grouped, lambda s: (s.heads, repeat_heads(s.heads // s.kv_heads)))
        counts = sorted({f"{s.kv_heads} -> {s.heads}" for s in grouped})
        note = f"{len(grouped)} layers: KV heads {', '.join(counts)}"
        if reasons:
            note += f"; left {len(reasons)}: {reasons[0]}"
        return PassResult(out, True, note)
