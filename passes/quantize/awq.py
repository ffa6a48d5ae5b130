"""AWQ (Lin et al. 2023): scale salient input channels up before rounding, then clip.

For the linears that read one activation x (q/k/v after a norm; gate/up; the q/k/v and MLP-in
of a shared-norm parallel block), the input channels get scales s = s_X^α with s_X = mean |x|
per channel over the calibration data (normalised by sqrt(max s · min s), as in the reference
mit-han-lab/llm-awq auto_scale.py). The weights' columns are multiplied by s and whatever
produces x is divided by it, so the float function is unchanged before rounding:

    rms_norm / layer_norm / add_rms_norm (normed)   weight (and bias) / s
    glu(gate, up)                                   rows of up's linear (and its bias) / s
    relu(h), h a linear's output                    rows of that linear (and its bias) / s
    linear                                          rows of that linear (and its bias) / s

α is searched on `grid` points i/grid (α = 0 is s = 1, plain rounding, so the choice is never
worse than it on the objective): the error of the group's outputs x·Wᵀ against
x·(Q(W·diag(s))·diag(s)⁻¹)ᵀ, summed over the group's linears, on sampled calibration rows.
The reference measures the whole attention module's output for q/k/v; here every group is
measured at its linears' outputs (what the reference does for o and down). Then each weight's
groups are clipped: max |w| shrunk by i/grid for i < grid/2, the shrink with the lowest error
of the group's partial products kept (llm-awq auto_clip.py; it skips q/k, this clips all).

Not scaled (clip only), with a note: a group whose x is read by anything but its linears, or
whose producer is none of the above (a norm without weight; gelu, where llm-awq inserts a
scaling op; attention output: v→o is not scaled, since it would change the KV cache the graph
returns, GQA or not), or whose producer's parameters are read elsewhere. Statistics come
from one interpreter run over the float graph (the reference also calibrates on float
activations); folding into a producer commutes with scaling it as a consumer, so the order of
groups does not matter beyond f16 scale rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from irgraph.ir import Graph, Node, Value
from irgraph.passes.calibrate import (
    evaluate,
    expert_hidden,
    expert_stacks,
    feeds_for,
    linear_inputs,
)
from irgraph.passes.context import PassContext
from irgraph.passes.quantize import rtn
from irgraph.quant import QuantSpec, dequantize
from irgraph.weights import WeightStore

SEARCH_ROWS = 4096  # calibration rows (tokens) kept per activation for the searches
CLIP_ROWS = 512  # of which the clip search reads (llm-awq's n_sample_token)
MAX_SHRINK = 0.5  # the clip search shrinks max |w| by at most this fraction
NORMS = {"rms_norm": 0, "layer_norm": 0, "add_rms_norm": 1}  # op -> output that is normed
THROUGH = {  # op -> input that a scale passes through: op(.., h / s, ..) = op(.., h, ..) / s
    "glu": 1,  # act(gate) · up/s = (act(gate) · up)/s
    "relu": 0,  # relu(h/s) = relu(h)/s for s > 0 (OPT's fc1 -> fc2 in llm-awq)
}


@dataclass(frozen=True)
class Group:
    """Linears (by weight) reading one activation x, and where x's scale is folded."""

    x: Value
    params: tuple[str, ...]
    vectors: tuple[str, ...]  # producer params divided by s elementwise (norm weight, bias)
    rows: tuple[str, ...]  # producer params whose rows (axis 0) are divided by s
    offset: float  # the norm's weight_offset: (w + offset) / s - offset
    why_not: str  # non-empty: not scaled, and why


def fake_quant(w: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """w rounded to nearest on its grid and dequantized (the IR's numerics), float32."""
    return dequantize(spec, w.shape, rtn.quantize_weight(w, spec))


def channel_scales(x_mean: np.ndarray, alpha: float) -> np.ndarray:
    """s = s_X^α, clamped at 1e-4 and normalised by sqrt(max · min) (llm-awq auto_scale.py)."""
    s = np.maximum(np.power(x_mean.astype(np.float64), alpha), 1e-4)
    return (s / np.sqrt(s.max() * s.min())).astype(np.float32)


def scale_loss(
    xs: np.ndarray, ws: Sequence[np.ndarray], specs: Sequence[QuantSpec], s: np.ndarray
) -> float:
    """Mean squared error of the group's outputs when its weights are rounded with scales s."""
    total, count = 0.0, 0
    for w, spec in zip(ws, specs):
        q = fake_quant(w * s, spec) / s
        err = xs @ (q - w).T  # x·Qᵀ - x·Wᵀ
        total += float(np.sum(np.square(err, dtype=np.float64)))
        count += err.size
    return total / max(count, 1)


def search_scale(
    xs: np.ndarray,
    x_mean: np.ndarray,
    ws: Sequence[np.ndarray],
    specs: Sequence[QuantSpec],
    grid: int,
) -> tuple[np.ndarray, float, list[float]]:
    """(s, α, loss per grid point) with the lowest `scale_loss`; α = 0 (s = 1) is point 0."""
    losses = [scale_loss(xs, ws, specs, channel_scales(x_mean, i / grid)) for i in range(grid)]
    best = int(np.argmin(losses))
    return channel_scales(x_mean, best / grid), best / grid, losses


def search_clip(w: np.ndarray, xs: np.ndarray, spec: QuantSpec, grid: int) -> np.ndarray:
    """w [N, K] with each quantization group clipped to the max |w| that best keeps x·wᵀ."""
    n, k = w.shape
    g, nb = spec.group_size(k), spec.blocks(k)
    wp = np.zeros((n, nb * g), np.float32)
    wp[:, :k] = w
    xp = np.zeros((len(xs), nb * g), np.float32)
    xp[:, :k] = xs
    wg, xg = wp.reshape(n, nb, g), xp.reshape(len(xs), nb, g)
    org_max = np.abs(wg).max(axis=-1, keepdims=True)  # [N, nb, 1]
    best_max = org_max.copy()
    best_err = np.full((n, nb), np.inf)
    org = np.einsum("rbg,nbg->nbr", xg, wg)  # each group's partial products
    for i in range(max(1, int(MAX_SHRINK * grid))):
        top = org_max * np.float32(1 - i / grid)
        cur = np.clip(wg, -top, top)
        q = fake_quant(cur.reshape(n, nb * g), spec).reshape(n, nb, g)
        err = np.mean(np.square(np.einsum("rbg,nbg->nbr", xg, q) - org), axis=-1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_max = np.where(better[..., None], top, best_max)
    return np.clip(wg, -best_max, best_max).reshape(n, nb * g)[:, :k]


def find_groups(graph: Graph, names: Sequence[str]) -> list[Group]:
    """The activations read by linears of `names`, each with its fold (or why it has none)."""
    uses = linear_inputs(graph, names)
    readers: dict[Value, list[Node]] = {}
    param_uses: dict[str, int] = {}
    for each in graph.nodes:
        for v in each.inputs:
            if v is not None:
                readers.setdefault(v, []).append(each)
                if v.param is not None:
                    param_uses[v.param] = param_uses.get(v.param, 0) + 1
    producers = graph.producers()
    outputs = set(graph.outputs.values())
    groups = []
    xs = dict.fromkeys(x for p in uses if len(uses[p]) == 1 for x in uses[p])
    for x in xs:
        params = tuple(p for p in uses if uses[p] == [x])
        why = ""
        for reader in readers.get(x, []):
            w = reader.inputs[1] if reader.op == "linear" else None
            if w is None or w.param not in params or reader.inputs[0] is not x:
                why = f"its input is also read by {reader.op}"
            elif param_uses.get(w.param, 0) != 1:
                why = f"@{w.param} is read more than once"
        if x in outputs:
            why = "its input is a graph output"
        vectors: tuple[str, ...] = ()
        rows: tuple[str, ...] = ()
        offset = 0.0
        node = producers.get(x)
        if node is None:
            why = why or "its input is a graph input"
        elif node.op in NORMS and node.outputs[NORMS[node.op]] is x:
            w_slot = 2 if node.op == "add_rms_norm" else 1
            ps = [node.inputs[w_slot], *(node.inputs[2:3] if node.op == "layer_norm" else [])]
            vectors = tuple(v.param for v in ps if v is not None and v.param is not None)
            offset = float(node.attrs.get("weight_offset", 0.0))
            if not vectors or ps[0] is None or ps[0].param is None:
                why = why or f"{node.op} has no weight to fold into"
        elif node.op in THROUGH or node.op == "linear":
            lin: Node | None = node
            if node.op in THROUGH:
                h = node.inputs[THROUGH[node.op]]
                lin = producers.get(h) if h is not None and len(readers[h]) == 1 else None
            if lin is None or lin.op != "linear":
                why = why or f"{node.op}'s input is not a linear's alone"
            else:
                rows = tuple(v.param for v in lin.inputs[1:] if v is not None and v.param)
                if len(rows) != len([v for v in lin.inputs[1:] if v is not None]):
                    why = why or "the producing linear's weight is computed"
        else:
            why = why or f"it is produced by {node.op} (no weight to fold into)"
        producer_params = (*vectors, *rows)
        if any(param_uses.get(p, 0) != 1 for p in producer_params):
            why = why or "the producer's parameters are read elsewhere"
        if any(not graph.params[p].type.dtype.is_float for p in producer_params):
            why = why or "the producer's parameters are not float"
        groups.append(Group(x, params, vectors, rows, offset, why))
    return groups


def collect(
    graph: Graph, batches: Sequence[np.ndarray], targets: Sequence[Value], ctx: PassContext
) -> tuple[dict[Value, np.ndarray], dict[Value, np.ndarray]]:
    """(mean |x| per channel, sampled rows) of each target over the calibration batches."""
    rng = np.random.default_rng(ctx.seed)
    per_batch = -(-SEARCH_ROWS // max(len(batches), 1))
    sums: dict[Value, np.ndarray] = {}
    rows: dict[Value, list[np.ndarray]] = {}
    count = 0
    for i, ids in enumerate(batches):
        ctx.progress(i, len(batches), "awq statistics")
        values = evaluate(graph, feeds_for(graph, ids), set(targets), {})
        for x in targets:
            a = values[x].reshape(-1, values[x].shape[-1]).astype(np.float32)
            sums[x] = sums.get(x, 0.0) + np.abs(a, dtype=np.float64).sum(axis=0)
            pick = rng.choice(len(a), min(per_batch, len(a)), replace=False)
            rows.setdefault(x, []).append(a[np.sort(pick)])
        count += int(np.prod(values[targets[0]].shape[:-1]))
    ctx.progress(len(batches), len(batches), "awq statistics")
    return {x: s / max(count, 1) for x, s in sums.items()}, {
        x: np.concatenate(r) for x, r in rows.items()
    }


def with_weights(graph: Graph, updates: Mapping[str, np.ndarray]) -> Graph:
    """`graph` whose weight store has `updates` (float params, cast to their declared dtype)."""
    if graph.weights is None:
        return graph
    arrays = {n: graph.weights[n] for n in graph.weights}
    for name, a in updates.items():
        arrays[name] = np.asarray(a).astype(graph.params[name].type.dtype.numpy)
    return Graph(
        graph.name,
        dict(graph.inputs),
        dict(graph.params),
        list(graph.nodes),
        dict(graph.outputs),
        dict(graph.meta),
        WeightStore(arrays),
    )


def scale_graph(
    graph: Graph,
    specs: Mapping[str, QuantSpec],
    grid: int,
    ctx: PassContext,
    p: Any,
    extra: Sequence[Value] = (),
) -> tuple[Graph, list[Group], dict[Value, np.ndarray], list[str]]:
    """The float graph with AWQ's scales folded in (same function), its groups, the sampled
    calibration rows of each group's input (and of the `extra` values), and notes for people."""
    uses = linear_inputs(graph, specs)
    other = {v.param for node in graph.nodes if node.op != "linear" for v in node.inputs if v}
    names = [name for name in specs if name in uses and name not in other]
    groups = find_groups(graph, names)
    targets = list(dict.fromkeys([*(gr.x for gr in groups), *extra]))
    if not targets:
        return graph, [], {}, []
    batches = ctx.need_calibration(p)
    means, rows = collect(graph, batches, targets, ctx)
    current: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        return current[name] if name in current else np.asarray(graph.weight(name), np.float32)

    notes = []
    for i, gr in enumerate(groups):
        ctx.progress(i, len(groups), "awq scales")
        if gr.why_not:
            notes.append(f"not scaled: {', '.join('@' + n for n in gr.params)} ({gr.why_not})")
            continue
        ws = [get(n) for n in gr.params]
        s, _, _ = search_scale(rows[gr.x], means[gr.x], ws, [specs[n] for n in gr.params], grid)
        for name, w in zip(gr.params, ws):
            current[name] = w * s
        for name in gr.vectors:
            off = gr.offset if name == gr.vectors[0] else 0.0
            current[name] = (get(name) + off) / s - off
        for name in gr.rows:
            a = get(name)
            current[name] = a / s.reshape(-1, *([1] * (a.ndim - 1)))
        rows[gr.x] = rows[gr.x] / s  # the input the scaled weights now read
    ctx.progress(len(groups), len(groups), "awq scales")
    return with_weights(graph, current), groups, rows, notes


def quantize_graph(
    graph: Graph, specs: Mapping[str, QuantSpec], grid: int, ctx: PassContext, p: Any
) -> tuple[Graph, dict[str, dict[str, np.ndarray]], list[str]]:
    """(graph with folded float weights, stored arrays of every weight in `specs`, notes).

    MoE expert stacks are not scaled (their input is the router's too, which stays float) but
    clipped expert by expert, each expert on every sampled calibration token whatever the router
    picks (down on that expert's own hidden activations). Weights read otherwise (embedding
    tables, tied heads) are rounded to nearest.
    """
    experts = expert_stacks(graph, specs)
    expert_xs = [node.inputs[0] for node, _ in experts.values() if node.inputs[0] is not None]
    scaled, groups, rows, notes = scale_graph(graph, specs, grid, ctx, p, expert_xs)
    x_of = {name: gr.x for gr in groups for name in gr.params}
    arrays: dict[str, dict[str, np.ndarray]] = {}

    def sampled(x: Value) -> np.ndarray:
        xs = rows[x]
        return xs[np.linspace(0, len(xs) - 1, min(CLIP_ROWS, len(xs))).astype(int)]

    for i, (name, spec) in enumerate(specs.items()):
        ctx.progress(i, len(specs), "awq clip")
        w = np.asarray(scaled.weight(name), np.float32)
        if name in x_of and w.ndim == 2:
            w = search_clip(w, sampled(x_of[name]), spec, grid)
        elif name in experts and experts[name][0].inputs[0] in rows:
            node, role = experts[name]
            xs = sampled(node.inputs[0])  # type: ignore[arg-type]
            w = np.stack(
                [
                    search_clip(
                        w[e],
                        expert_hidden(node, xs, scaled.weight, e) if role == "w_down" else xs,
                        spec,
                        grid,
                    )
                    for e in range(len(w))
                ]
            )
        arrays[name] = rtn.quantize_weight(w, spec)
    ctx.progress(len(specs), len(specs), "awq clip")
    rounded = len(specs) - len(x_of.keys() & specs.keys()) - len(experts)
    if experts:
        notes.append(
            f"{len(experts)} expert stacks clipped expert by expert on every token (not scaled)"
        )
    if rounded:
        notes.append(f"{rounded} weights not read by one linear input rounded to nearest")
    for note in notes:
        ctx.log(f"note: quantize(method=awq) {note}")
    return scaled, arrays, notes
