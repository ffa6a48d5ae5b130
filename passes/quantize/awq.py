"""AWQ (Lin et al. 2023): scale salient input channels up before rounding, then clip.

For the linears that read one activation x (q/k/v after a norm; gate/up; the q/k/v and MLP-in
of a shared-norm parallel block), the input channels get scales s = s_X^α with s_X = mean |x|
per channel over the calibration data (normalised by sqrt(max s · min s), as in the reference
mit-han-lab/llm-awq auto_scale.py). The weights' columns are multiplied by s and whatever
produces x is divided by it (passes/scale_fold.py, shared with smoothquant), so the float
function is unchanged before rounding.

α is searched on `grid` points i/grid (α = 0 is s = 1, plain rounding, so the choice is never
worse than it on the objective), the group's weights W replaced by Q(W·diag(s))·diag(s)⁻¹.
The objective is the reference's: for a group read through a norm (q/k/v; gate/up; a parallel
block's q/k/v + MLP-in) the error of the block's output, attention or MLP with the rest of it
float, on the first calibration windows (awq_block.py); for the others (down after up) the
error of the group's own outputs x·Wᵀ on sampled calibration rows. Then each weight's
groups are clipped: max |w| shrunk by i/grid for i < grid/2, the shrink with the lowest error
of the group's partial products kept (llm-awq auto_clip.py; it skips q/k, this clips all).

Not scaled (clip only), with a note: a group scale_fold.py cannot fold (gelu, where llm-awq
inserts a scaling op; v→o, which would change the KV cache the graph returns). Statistics come
from one interpreter run over the float graph (the reference also calibrates on float
activations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.ir import Graph, Value
from irgraph.passes.calibrate import (
    evaluate,
    expert_hidden,
    expert_stacks,
    feeds_for,
    linear_inputs,
)
from irgraph.passes.context import PassContext
from irgraph.passes.quantize import rtn
from irgraph.passes.quantize.awq_block import BlockLoss, block_output, windows_for
from irgraph.passes.quantize.scale_search import best_shrink
from irgraph.passes.scale_fold import Group, find_groups, fold, with_weights
from irgraph.quant import QuantSpec, dequantize

SEARCH_ROWS = 4096  # calibration rows (tokens) kept per activation for the searches
CLIP_ROWS = 512  # of which the clip search reads (llm-awq's n_sample_token)
MAX_SHRINK = 0.5  # the clip search shrinks max |w| by at most this fraction


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
    loss: Callable[[np.ndarray], float] | None = None,
) -> tuple[np.ndarray, float, list[float]]:
    """(s, α, loss per grid point) with the lowest loss of s (default `scale_loss` on xs);
    α = 0 (s = 1) is point 0."""
    loss = loss or (lambda s: scale_loss(xs, ws, specs, s))
    losses = [loss(channel_scales(x_mean, i / grid)) for i in range(grid)]
    best = int(np.argmin(losses))
    return channel_scales(x_mean, best / grid), best / grid, losses


def rounded_loss(
    block: BlockLoss, names: Sequence[str], ws: Sequence[np.ndarray], specs: Sequence[QuantSpec]
) -> Callable[[np.ndarray], float]:
    """s -> the block's error with the weights `names` rounded under scales s."""

    def loss(s: np.ndarray) -> float:
        return block({n: fake_quant(w * s, sp) / s for n, w, sp in zip(names, ws, specs)})

    return loss


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
    org = np.einsum("rbg,nbg->nbr", xg, wg)  # each group's partial products

    def error(p: np.float32) -> np.ndarray:  # [N, nb]
        top = org_max * p
        q = fake_quant(np.clip(wg, -top, top).reshape(n, nb * g), spec).reshape(n, nb, g)
        return np.mean(np.square(np.einsum("rbg,nbg->nbr", xg, q) - org), axis=-1)

    best_max = org_max * best_shrink((n, nb), int(MAX_SHRINK * grid), grid, error)[..., None]
    return np.clip(wg, -best_max, best_max).reshape(n, nb * g)[:, :k]


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
        gspecs = [specs[n] for n in gr.params]
        loss = None
        span = block_output(graph, gr)
        if span is not None:  # llm-awq's objective: the block's output, the rest of it float
            block = BlockLoss(graph, span, windows_for(batches, SEARCH_ROWS), current)
            loss = rounded_loss(block, gr.params, ws, gspecs)
        s, _, _ = search_scale(rows[gr.x], means[gr.x], ws, gspecs, grid, loss)
        current.update(fold(gr, s, get))
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
