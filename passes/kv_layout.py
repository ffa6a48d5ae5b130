"""kv-layout(layout=bnsh|bsnh): the per-head KV cache stored in the other axis order (exact).

bnsh is [batch, kv_heads, past, head_dim] (the attention op's own order, ORT GQA, genai);
bsnh is [batch, past, kv_heads, head_dim] (the order the projections produce). The pass
retypes every `past_key_values.{i}.{key,value}` input and `present.{i}.*` output, puts a
transpose between them and the attention, and states the layout in the graph's KV-cache
contract (irgraph/kvcache.py), which artifacts copy into their manifest. Converting back
removes the transposes the first conversion added. Latent caches ([batch, past, width])
have one layout and are left alone. Checked end to end: the cache shapes change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from irgraph.ir import Graph, Node, Value
from irgraph.kvcache import LAYOUTS, contract_of, is_scale, with_contract
from irgraph.lm import PAST_PREFIX, PRESENT_PREFIX
from irgraph.passes.context import PassContext
from irgraph.passes.equivalence import END_TO_END
from irgraph.passes.graphs import GraphIndex, rebuild
from irgraph.passes.manager import EXACT, Pass, PassResult, option, register_pass

SWAP = (0, 2, 1, 3)  # bnsh <-> bsnh; its own inverse


@register_pass
@dataclass(frozen=True)
class KvLayout(Pass):
    name = "kv-layout"
    kind = EXACT
    summary = "store the per-head KV cache as bnsh or bsnh (transposes at the graph edge)"
    check_mode: ClassVar[str] = END_TO_END
    layout: Literal["bnsh", "bsnh"] = option("bsnh", choices=LAYOUTS, doc="the cache layout")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        contract = contract_of(graph.meta)
        if contract.layout == self.layout:
            return PassResult(graph, False, f"the cache is already {self.layout}")
        names = [n for n in graph.inputs if _per_head(n)]
        if not names:
            return PassResult(graph, False, "the graph has no per-head KV cache")
        index = GraphIndex(graph)
        inputs, outputs = dict(graph.inputs), dict(graph.outputs)
        subst: dict[Value, Value] = {}
        head: list[Node] = []
        for name in names:
            old = graph.inputs[name]
            new = inputs[name] = Value(old.type.with_shape(_swap(old.type.shape)), hint=old.hint)
            users = index.users_of(old)
            if users and all(_is_swap(u) for u in users) and old not in index.outputs:
                subst.update((u.outputs[0], new) for u in users)  # undo an earlier kv-layout
            else:
                head.append(Node("transpose", (new,), (old,), {"perm": SWAP}))
        tail: list[Node] = []
        for name in names:
            present = PRESENT_PREFIX + name[len(PAST_PREFIX) :]
            result = graph.outputs.get(present)
            if result is None:
                continue
            producer = index.producer.get(result)
            if producer is not None and _is_swap(producer):
                outputs[present] = producer.arg(0)
            else:
                swapped = Value(result.type.with_shape(_swap(result.type.shape)), hint=result.hint)
                tail.append(Node("transpose", (result,), (swapped,), {"perm": SWAP}))
                outputs[present] = swapped
        nodes = []
        for node in [*head, *graph.nodes, *tail]:
            ins = tuple(subst.get(v, v) if v is not None else None for v in node.inputs)
            nodes.append(
                node if ins == node.inputs else Node(node.op, ins, node.outputs, node.attrs)
            )
        meta = with_contract(graph.meta, dataclasses.replace(contract, layout=self.layout))
        staged = Graph(graph.name, inputs, graph.params, graph.nodes, graph.outputs, meta)
        staged.weights = graph.weights
        out = rebuild(staged, nodes, outputs=outputs)
        return PassResult(
            out, True, f"{len(names)} cache tensors {contract.layout} -> {self.layout}"
        )


def _per_head(name: str) -> bool:
    return name.startswith(PAST_PREFIX) and not name.endswith(".latent") and not is_scale(name)


def _is_swap(node: Node) -> bool:
    return node.op == "transpose" and tuple(node.attrs["perm"]) == SWAP


def _swap(shape: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(shape[i] for i in SWAP)
