"""fuse-parallel-attention: PaLM's fused projections for parallel blocks.

A parallel block computes y = x + Attn(LN(x)) + MLP(LN(x)) (PaLM, U-PaLM,
GPT-J, CodeGen, Falcon). Two exact rewrites make it cheaper:

  parallel-input-projection   every linear reading the shared LN(x) (q, k, v and
                              the MLP's up/gate) becomes one linear over LN(x)
                              with the weights stacked, and a split.
  parallel-output-projection  the two residual branches end in linears (attention
                              out, MLP down) summed into x; they become one linear
                              over concat(attn, mlp_hidden) with the weights side by
                              side ([W_o | W_down]) and the biases added, so the
                              residual adds combine into one.

GPT-NeoX normalises the two branches separately (x + Attn(LN1(x)) + MLP(LN2(x))):
the input rule finds no norm read by both, so nothing is merged across the two
norms; the output rule still combines the residual adds. Sequential blocks match
neither (the MLP input depends on the attention output).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from irgraph.ir import Graph, Node, Value
from irgraph.passes.context import PassContext
from irgraph.passes.graphs import GraphIndex, common_prefix
from irgraph.passes.manager import EXACT, Pass, PassResult, option, register_pass
from irgraph.passes.projections import fuse_linears, group_problem, is_norm, role
from irgraph.passes.rewrite import Candidate, Miss, Rewriter, Rule, apply_rules
from irgraph.types import TensorType, eval_dim


class ParallelInputProjection(Rule):
    name = "parallel-input-projection"
    summary = "linears over a norm shared by attention and MLP -> one linear + split"

    def candidates(self, index: GraphIndex) -> Iterator[Candidate | Miss]:
        for node in index.graph.nodes:
            if not is_norm(node):
                continue
            h = node.outputs[0]
            linears = [u for u in index.users_of(h) if u.op == "linear" and u.inputs[0] is h]
            if not linears:
                continue
            where = index.describe(node)
            roles = {lin: role(index, lin.outputs[0]) for lin in linears}
            attn = [lin for lin in linears if roles[lin] == "attn"]
            mlp = [lin for lin in linears if roles[lin] == "mlp"]
            if attn and mlp:
                fused = tuple(lin for lin in linears if roles[lin] in ("attn", "mlp"))
                yield Candidate(where, fused, {"x": h, "linears": fused})
            elif attn:
                yield Miss(
                    where,
                    "only attention projections read this norm: the MLP has its own norm "
                    "(a sequential or two-norm block); fuse-qkv merges q/k/v",
                )
            elif mlp:
                yield Miss(
                    where,
                    "only MLP projections read this norm: the attention has its own norm "
                    "(a sequential or two-norm block); fuse-gate-up merges a gated MLP's gate/up",
                )
            else:
                yield Miss(
                    where,
                    "the linears reading this norm feed neither attention nor an MLP "
                    "(e.g. the final norm before the LM head)",
                )

    def check(self, index: GraphIndex, cand: Candidate) -> str | None:
        return group_problem(index, cand.linears)

    def rewrite(self, rw: Rewriter, cand: Candidate) -> None:
        fuse_linears(rw, cand.x, cand.linears, "in_proj")


def _sum_tree(index: GraphIndex, root: Node) -> tuple[list[Node], list[Value]]:
    """The adds of the sum rooted at `root` (inner adds used only by it) and the summed values."""
    t = root.outputs[0].type
    adds, leaves = [root], []
    stack = list(reversed(root.inputs))
    while stack:
        v = stack.pop()
        node = index.producer.get(v) if v is not None else None
        if (
            v is not None
            and node is not None
            and node.op == "add"
            and index.single_use(v)
            and v.type == t
        ):
            adds.append(node)
            stack.extend(reversed(node.inputs))
        elif v is not None:
            leaves.append(v)
    return adds, leaves


class ParallelOutputProjection(Rule):
    name = "parallel-output-projection"
    summary = (
        "residual sum of attention-out and MLP-down linears -> one linear over the concatenation"
    )

    def candidates(self, index: GraphIndex) -> Iterator[Candidate | Miss]:
        for node in index.graph.nodes:
            if node.op != "add":
                continue
            out = node.outputs[0]
            if (
                index.single_use(out)
                and index.users_of(out)[0].op == "add"
                and index.users_of(out)[0].outputs[0].type == out.type
            ):
                continue  # an inner add: its sum tree is rooted further down
            adds, leaves = _sum_tree(index, node)
            projections = []
            for v in leaves:
                producer = index.producer.get(v)
                if producer is not None and producer.op == "linear" and index.single_use(v):
                    projections.append(producer)
            if not projections:
                continue
            where = index.describe(node)
            if len(projections) < 2:
                yield Miss(
                    where,
                    "only one projection is summed here (a sequential block, or already merged)",
                )
                continue
            yield Candidate(
                where,
                (*adds, *projections),
                {"root": node, "leaves": tuple(leaves), "linears": tuple(projections)},
            )

    def check(self, index: GraphIndex, cand: Candidate) -> str | None:
        linears = cand.linears
        reason = group_problem(index, linears)
        if reason:
            return reason
        lead = {(lin.inputs[0].type.dtype, lin.inputs[0].type.shape[:-1]) for lin in linears}
        if len(lead) > 1:
            return "the projections' inputs differ in dtype or leading dims"
        for a in linears:
            for b in linears:
                if a is not b and index.depends_on(a.inputs[0], b.outputs[0]):
                    return (
                        f"the input of {index.describe(a)} depends on {index.describe(b)} "
                        "(a sequential block)"
                    )
        return None

    def rewrite(self, rw: Rewriter, cand: Candidate) -> None:
        linears: tuple[Node, ...] = cand.linears
        ws = [lin.arg(1) for lin in linears]
        prefix = common_prefix(
            w.param or "" for w in ws
        )  # the pattern matched parameter weights only
        wt = ws[0].type
        ins = [eval_dim(w.type.shape[1], {}) for w in ws]
        weight = rw.param(
            f"{prefix}out_proj.weight",
            TensorType(wt.dtype, (wt.shape[0], sum(ins))),
            np.concatenate([rw.weight(w) for w in ws], axis=1) if rw.has_weights else None,
        )
        args = [
            rw.emit("concat", *(lin.inputs[0] for lin in linears), axis=-1, hint="branches"),
            weight,
        ]
        biases = [
            lin.inputs[2] for lin in linears if len(lin.inputs) > 2 and lin.inputs[2] is not None
        ]
        if biases:
            total = None
            if rw.has_weights:  # y = Σ (x_i W_iᵀ + b_i) = concat(x_i) [W_i]ᵀ + Σ b_i
                total = np.sum([rw.weight(b).astype(np.float64) for b in biases], axis=0)
            args.append(rw.param(f"{prefix}out_proj.bias", biases[0].type, total))
        merged = rw.emit("linear", *args, hint="out_proj")
        acc: Value | None = None
        for v in cand.leaves:
            if any(v is lin.outputs[0] for lin in linears):
                continue
            acc = v if acc is None else rw.emit("add", acc, v, hint=cand.root.outputs[0].hint)
        rw.replace(
            cand.root.outputs[0],
            merged if acc is None else rw.emit("add", acc, merged, hint=cand.root.outputs[0].hint),
        )


@register_pass
@dataclass(frozen=True)
class FuseParallelAttention(Pass):
    name = "fuse-parallel-attention"
    kind = EXACT
    summary = (
        "PaLM-style fused input projection and merged residual projections for parallel blocks"
    )
    merge_inputs: bool = option(True, doc="one linear over the shared input of q/k/v and the MLP")
    merge_outputs: bool = option(
        True, doc="one linear for the attention and MLP output projections"
    )

    def rules(self) -> list[Rule]:
        return ([ParallelInputProjection()] if self.merge_inputs else []) + (
            [ParallelOutputProjection()] if self.merge_outputs else []
        )

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        out, fired = apply_rules(graph, self.rules())
        return PassResult(out, fired > 0, f"{fired} rewrites")
