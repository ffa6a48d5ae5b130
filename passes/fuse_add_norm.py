"""fuse-add-norm: a residual add and the RMSNorm of its sum -> one `add_rms_norm`.

Pre-norm blocks compute `h = x + residual` and then `rms_norm(h)` for the next
sublayer; both read the same row, so a backend can do them in one kernel (ONNX
Runtime's SkipSimplifiedLayerNormalization). The op returns the sum too (the
next residual), so the rewrite is exact. `irgraph explain fuse-add-norm PATH`
says why a norm was left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from irgraph.ir import Graph, Value
from irgraph.passes.context import PassContext
from irgraph.passes.manager import EXACT, Pass, PassResult, register_pass
from irgraph.passes.rewrite import Candidate, Rewriter, TreeRule, apply_rules, op, var


def _same_shapes(m: Candidate) -> str | None:
    """The fused kernel adds rows of one shape: no broadcasting."""
    x, residual, total = m.x.type, m.residual.type, m.add.outputs[0].type
    if x == residual == total:
        return None
    return f"the add broadcasts ({x} + {residual} -> {total})"


def _fuse(rw: Rewriter, m: Candidate) -> Value:
    norm = m.root
    total, normed = rw.emit(
        "add_rms_norm",
        m.x,
        m.residual,
        norm.inputs[1],
        hint=norm.outputs[0].hint,
        eps=norm.attrs["eps"],
        weight_offset=norm.attrs["weight_offset"],
    )
    total.hint = m.add.outputs[0].hint
    rw.replace(m.add.outputs[0], total)
    return normed


RULE = TreeRule(
    "fuse-add-norm",
    op("rms_norm", op("add", var("x"), var("residual"), bind="add")),
    check=_same_shapes,
    rewrite=_fuse,
    summary="add + rms_norm of the sum -> add_rms_norm (sum and normed)",
)


@register_pass
@dataclass(frozen=True)
class FuseAddNorm(Pass):
    name = "fuse-add-norm"
    kind = EXACT
    summary = RULE.summary

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        out, fired = apply_rules(graph, [RULE])
        return PassResult(out, fired > 0, f"fused {fired} add + rms_norm pairs")
