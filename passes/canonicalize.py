"""canonicalize: local simplifications, one rule per line (tinygrad's table style).

Each rule removes work that is a no-op or collapses two ops into one; all are
exact. `irgraph explain reshape-reshape PATH` says why a rule did not fire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from irgraph.ir import Graph, Value
from irgraph.passes.context import PassContext
from irgraph.passes.manager import EXACT, Pass, PassResult, register_pass
from irgraph.passes.rewrite import Candidate, Rewriter, TreeRule, apply_rules, op, var

X = var("x")


def _same_type(m: Candidate) -> str | None:
    return (
        None
        if m.root.outputs[0].type == m.x.type
        else f"it changes the type ({m.x.type} -> {m.root.outputs[0].type})"
    )


def _identity(rw: Rewriter, m: Candidate) -> Value:
    return m.x


def _reshape_reshape_check(m: Candidate) -> str | None:
    # A 0 in the outer shape copies the inner result's dim; it may stay only if x has that dim too.
    inner_out = m.inner.outputs[0].type.shape
    for i, d in enumerate(m.root.attrs["shape"]):
        if d == 0 and (i >= m.x.type.rank or m.x.type.shape[i] != inner_out[i]):
            return f"the outer reshape copies dim {i} (0), which the inner reshape changed"
    return None


def _reshape_reshape(rw: Rewriter, m: Candidate) -> Value:
    return rw.emit("reshape", m.x, hint=m.root.outputs[0].hint, shape=list(m.root.attrs["shape"]))


def _transpose_transpose(rw: Rewriter, m: Candidate) -> Value:
    inner, outer = m.inner.attrs["perm"], m.root.attrs["perm"]
    perm = [inner[p] for p in outer]  # out[i] = mid[outer[i]] = x[inner[outer[i]]]
    if perm == list(range(len(perm))):
        return m.x
    return rw.emit("transpose", m.x, hint=m.root.outputs[0].hint, perm=perm)


def _identity_perm(m: Candidate) -> str | None:
    perm = list(m.root.attrs["perm"])
    return None if perm == list(range(len(perm))) else f"the perm {perm} moves axes"


def _one_input(m: Candidate) -> str | None:
    return None if len(m.root.inputs) == 1 else f"it has {len(m.root.inputs)} inputs"


def _one_piece(m: Candidate) -> str | None:
    return (
        None
        if len(m.root.outputs) == 1 and _same_type(m) is None
        else "it splits into several pieces"
    )


def _attr_is(key: str, value: object) -> Callable[[Candidate], str | None]:
    def check(m: Candidate) -> str | None:
        return (
            None if m.root.attrs[key] == value else f"{key} is {m.root.attrs[key]!r}, not {value!r}"
        )

    return check


RULES: tuple[TreeRule, ...] = (
    TreeRule(
        "reshape-noop", op("reshape", X), check=_same_type, rewrite=_identity
    ),  # reshape(x) -> x, same shape
    TreeRule(
        "reshape-reshape",
        op("reshape", op("reshape", X, bind="inner")),
        check=_reshape_reshape_check,
        rewrite=_reshape_reshape,
    ),  # reshape(reshape(x)) -> reshape(x)
    TreeRule(
        "transpose-noop", op("transpose", X), check=_identity_perm, rewrite=_identity
    ),  # x.T(0,1,..) -> x
    TreeRule(
        "transpose-transpose",
        op("transpose", op("transpose", X, bind="inner")),
        rewrite=_transpose_transpose,
    ),  # transpose(transpose(x)) -> transpose(x, composed) or x
    TreeRule(
        "cast-noop", op("cast", X), check=_same_type, rewrite=_identity
    ),  # cast(x: f32, f32) -> x
    TreeRule(
        "scale-one", op("scale", X), check=_attr_is("factor", 1.0), rewrite=_identity
    ),  # x * 1 -> x
    TreeRule("neg-neg", op("neg", op("neg", X)), rewrite=_identity),  # -(-x) -> x
    TreeRule("concat-one", op("concat", X), check=_one_input, rewrite=_identity),  # concat(x) -> x
    TreeRule(
        "split-one", op("split", X), check=_one_piece, rewrite=_identity
    ),  # split(x, [n]) -> x
    TreeRule(
        "slice-noop", op("slice", X), check=_same_type, rewrite=_identity
    ),  # x[0:n] of an n-dim -> x
)


@register_pass
@dataclass(frozen=True)
class Canonicalize(Pass):
    name = "canonicalize"
    kind = EXACT
    summary = "remove no-op reshapes/casts/transposes, fold reshape and transpose chains"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        out, fired = apply_rules(graph, RULES)
        return PassResult(out, fired > 0, f"{fired} rewrites")
