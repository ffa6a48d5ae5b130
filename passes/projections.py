"""What the fusion rules share: the role of a linear projection, and fusing linears.

A projection's role is read from where its result goes, through ops that only
move data (reshape, split, rotary, ...): into attention's q/k/v it is an
attention projection, into an activation or gate it is an MLP input
projection. Which ops are which comes from their registry traits
(`transparent`, `Category.ACTIVATION`, `gating`, `Category.NORM`), so a new op
declared with those traits is traced without changes here.

Fusing linears that read the same input concatenates their weights along the
output dim into one new parameter and splits the result; it is exact (each
output column is computed from the same row of weights as before).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from irgraph.errors import PassError
from irgraph.ir import Node, Value
from irgraph.passes.graphs import GraphIndex, common_prefix
from irgraph.passes.rewrite import Rewriter
from irgraph.registry import Category, get_op
from irgraph.types import TensorType, eval_dim

ATTENTION = "attention"
QKV_SLOTS = ("q", "k", "v")


def transparent(node: Node) -> bool:
    """The node only moves, rotates, casts or scales input 0: a projection's role shows through."""
    return get_op(node.op).transparent


def is_activation(node: Node) -> bool:
    """The node is a unary activation (silu, gelu, relu, ...): what an MLP gate projection feeds."""
    return get_op(node.op).category is Category.ACTIVATION


def feeds_mlp(node: Node) -> bool:
    """An MLP input projection goes here: an activation, a gated unit or a gating product."""
    return is_activation(node) or get_op(node.op).gating


def is_norm(node: Node) -> bool:
    """The node normalises its input 0 over the last dim with a learned weight into its one
    output (layer_norm, rms_norm; not add_rms_norm, whose normed value is its second output)."""
    op = get_op(node.op)
    return op.category is Category.NORM and len(op.outputs) == 1


def role(index: GraphIndex, v: Value, depth: int = 8) -> str:
    """'attn' | 'mlp' | 'other' for the result `v` of a projection."""
    found: set[str] = set()
    frontier = [v]
    for _ in range(depth):
        nxt: list[Value] = []
        for cur in frontier:
            for user in index.users_of(cur):
                slots = [i for i, x in enumerate(user.inputs) if x is cur]
                if user.op == ATTENTION and all(i < 3 for i in slots):
                    found.add("attn")
                elif feeds_mlp(user):
                    found.add("mlp")
                elif transparent(user) and slots == [0]:
                    nxt.extend(user.outputs)
                else:
                    found.add("other")
            if cur in index.outputs:
                found.add("other")
        frontier = nxt
        if not frontier:
            break
    return found.pop() if len(found) == 1 else "other"


def source_linear(index: GraphIndex, v: Value | None) -> tuple[Node | None, str]:
    """The linear that computes `v` through data-moving ops, or (None, what was found instead)."""
    seen = 0
    while v is not None and seen < 8:
        node = index.producer.get(v)
        if node is None:
            return None, "a parameter" if v.param else "a graph input"
        if node.op == "linear":
            return node, ""
        if not transparent(node):
            return None, f"a {node.op}"
        v = node.inputs[0]
        seen += 1
    return None, "nothing"


def linear_problem(index: GraphIndex, node: Node, quantized_ok: bool = False) -> str | None:
    """Why the linear `node` cannot be fused (weights computed, or quantized unless
    `quantized_ok`: stacking rows keeps every per-row group as it was), or None."""
    w = node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if w is None or w.param is None:
        return f"the weight of {index.describe(node)} is computed, not a parameter"
    if not w.type.dtype.is_float and not (quantized_ok and w.type.quant is not None):
        return f"the weight @{w.param} is quantized ({w.type.dtype}); fuse before quantizing"
    if bias is not None and bias.param is None:
        return f"the bias of {index.describe(node)} is computed, not a parameter"
    return None


def group_problem(
    index: GraphIndex, linears: Sequence[Node], quantized_ok: bool = False
) -> str | None:
    """Why these linears cannot become one (stacked along output rows), or None."""
    for n in linears:
        reason = linear_problem(index, n, quantized_ok)
        if reason:
            return reason
    dtypes = {n.inputs[1].type.dtype for n in linears if n.inputs[1] is not None}
    if len(dtypes) > 1:
        return f"the weights differ in dtype ({', '.join(sorted(map(str, dtypes)))})"
    specs = {str(n.inputs[1].type.quant) for n in linears if n.inputs[1] is not None}
    if len(specs) > 1:
        return f"the weights are quantized differently ({', '.join(sorted(specs))})"
    attrs = {tuple(sorted(n.attrs.items())) for n in linears}
    if len(attrs) > 1:  # e.g. W8A8's act_quant: one fused linear computes one way
        return "the linears' attributes differ"
    bias_dtypes = {
        n.inputs[2].type.dtype for n in linears if len(n.inputs) > 2 and n.inputs[2] is not None
    }
    if len(bias_dtypes) > 1:
        return "the biases differ in dtype"
    return None


def width_problem(linears: Sequence[Node], max_width: int) -> str | None:
    """Why fusing `linears` would make a linear wider than `max_width` x its in features, or None.

    0 means unlimited. A wide fused matmul can be slower than its parts (ORT's CPU MatMul: q/k/v
    fused is faster, q/k/v plus LLaMA's gate/up fused is slower), so a target bounds the width.
    """
    if not max_width:
        return None
    weights = [n.arg(1) for n in linears]
    rows = sum(eval_dim(w.type.shape[0], {}) for w in weights)
    features = eval_dim(weights[0].type.shape[1], {})
    if rows <= max_width * features:
        return None
    return (
        f"the fused weight would have {rows} output rows, over max_width={max_width} x "
        f"{features} input features"
    )


def _bias(n: Node) -> Value | None:
    return n.inputs[2] if len(n.inputs) > 2 else None


def fuse_linears(rw: Rewriter, x: Value, linears: Sequence[Node], tag: str) -> None:
    """Replace `linears` (all reading `x`) by one linear with concatenated weights and a split."""
    ws = [n.arg(1) for n in linears]
    names = [w.param for w in ws]
    if not all(names):  # group_problem admits only parameter weights
        raise PassError(
            f"{tag}: can only fuse linears whose weights are parameters", where=f"fuse {tag}"
        )
    prefix = common_prefix(name for name in names if name)
    sizes = [eval_dim(w.type.shape[0], {}) for w in ws]
    wt = ws[0].type
    fused_type = TensorType(wt.dtype, (sum(sizes), wt.shape[1]), wt.quant)
    stacked: np.ndarray | dict[str, np.ndarray] | None = None
    if rw.has_weights and wt.quant is not None:  # stored rows (data, scales, zeros) stacked
        parts = [rw.stored(w) for w in ws]
        stacked = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
    elif rw.has_weights:
        stacked = np.concatenate([rw.weight(w) for w in ws], axis=0)
    weight = rw.param(f"{prefix}{tag}.weight", fused_type, stacked)
    inputs = [x, weight]
    biases = [_bias(n) for n in linears]
    if any(b is not None for b in biases):
        bdtype = next(b for b in biases if b is not None).type.dtype
        arr = None
        if rw.has_weights:  # a linear without a bias gets zeros: adding 0 is exact
            arr = np.concatenate(
                [
                    rw.weight(b) if b is not None else np.zeros(s, bdtype.numpy)
                    for b, s in zip(biases, sizes)
                ]
            )
        inputs.append(rw.param(f"{prefix}{tag}.bias", TensorType(bdtype, (sum(sizes),)), arr))
    y = rw.emit("linear", *inputs, hint=tag, **linears[0].attrs)  # group_problem: all alike
    parts = rw.emit("split", y, axis=-1, sizes=sizes)
    for node, part in zip(linears, parts):
        part.hint = node.outputs[0].hint  # a new value: naming it after what it replaces reads best
        rw.replace(node.outputs[0], part)
