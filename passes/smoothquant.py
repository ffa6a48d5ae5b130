"""smoothquant: move activation outliers into the weights before W8A8 (Xiao et al. 2022).

    smoothquant(alpha=0.5)          then    quantize(method=w8a8)

Per-token int8 activations lose the small channels of a token that has a few huge ones. For
each group of linears reading one activation x (q/k/v after a norm, gate/up, down after glu,
PaLM's shared-norm q/k/v + MLP-in), every input channel j gets

    s_j = max|X_j|^α / max|W_j|^(1-α)

with max|X_j| over the calibration tokens (PassContext.calibration, `--calibration`) and
max|W_j| over the column j of all the group's weights (the group is smoothed jointly: one x,
one s). x is divided by s (folded into its producer: the norm's weight, or the rows of the
linear before glu / relu, passes/scale_fold.py, as awq folds its scales) and the weight
columns are multiplied by it, so the float function is unchanged: kind exact. α = 0 leaves x
alone but equalises the weight columns; α = 1 moves all of x's range into the weights. A
channel never active on the calibration data, or with all-zero weights, keeps s = 1; s is
clamped to >= 1e-5 as in the reference (mit-han-lab/smoothquant smooth.py), then rounded to
the nearest power of two (in log2): dividing and multiplying by a power of two is exact in
float, so the smoothed graph computes bit-identical outputs (unscaled, float32 rounding of the
folded weights moved the logits of a 30x-outlier model by 3e-5 relative), at the price of s
being within a factor √2 of the paper's.

Not smoothed, with a note: the LM head (it stays float under w8a8), quantized weights, and the
groups scale_fold.py cannot fold (v→o: the KV cache; gelu's input). Statistics come from one
interpreter run of the float graph per calibration batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irgraph.ir import Graph, Value
from irgraph.passes.calibrate import evaluate, feeds_for
from irgraph.passes.context import PassContext
from irgraph.passes.manager import EXACT, Pass, PassResult, option, register_pass
from irgraph.passes.quantize.common import lm_head
from irgraph.passes.scale_fold import find_groups, fold, with_weights

MIN_SCALE = 1e-5  # the reference's clamp


def smoothing_scales(x_max: np.ndarray, w_max: np.ndarray, alpha: float) -> np.ndarray:
    """s = x_max^α / w_max^(1-α) per channel, 1 where either maximum is 0, as float32 powers of
    two (the nearest in log2)."""
    x64, w64 = x_max.astype(np.float64), w_max.astype(np.float64)
    live = (x64 > 0) & (w64 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(live, np.power(x64, alpha) / np.power(w64, 1 - alpha), 1.0)
    return np.exp2(np.round(np.log2(np.maximum(s, MIN_SCALE)))).astype(np.float32)


def activation_max(
    graph: Graph, batches: tuple[np.ndarray, ...], targets: list[Value], ctx: PassContext
) -> dict[Value, np.ndarray]:
    """max |x| per channel of each target over every token of the calibration batches."""
    maxima: dict[Value, np.ndarray] = {}
    for i, ids in enumerate(batches):
        ctx.progress(i, len(batches), "smoothquant statistics")
        values = evaluate(graph, feeds_for(graph, ids), set(targets), {})
        for x in targets:
            a = np.abs(values[x].reshape(-1, values[x].shape[-1]).astype(np.float32)).max(axis=0)
            maxima[x] = np.maximum(maxima[x], a) if x in maxima else a
    ctx.progress(len(batches), len(batches), "smoothquant statistics")
    return maxima


@register_pass
@dataclass(frozen=True)
class SmoothQuant(Pass):
    name = "smoothquant"
    kind = EXACT
    summary = "scale linear inputs' channels into the weights before W8A8 (needs calibration)"
    alpha: float = option(0.5, min=0.0, max=1.0, doc="migration strength, 0 <= alpha <= 1")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        head = lm_head(graph)
        names = [
            name
            for name, v in graph.params.items()
            if v.type.quant is None and v.type.dtype.is_float and name != head
        ]
        groups = find_groups(graph, names)
        foldable = [gr for gr in groups if not gr.why_not]
        notes = [
            f"not smoothed: {', '.join('@' + n for n in gr.params)} ({gr.why_not})"
            for gr in groups
            if gr.why_not
        ]
        if not foldable:
            return PassResult(graph, False, "; ".join(["no linear input to smooth", *notes]))
        if graph.weights is None:
            return PassResult(graph, False, "structure-only graph: no weights to smooth")
        batches = ctx.need_calibration(self)
        x_max = activation_max(graph, batches, [gr.x for gr in foldable], ctx)
        current: dict[str, np.ndarray] = {}

        def get(name: str) -> np.ndarray:
            return current[name] if name in current else np.asarray(graph.weight(name), np.float32)

        for gr in foldable:
            w_max = np.max([np.abs(get(n)).max(axis=0) for n in gr.params], axis=0)
            current.update(fold(gr, smoothing_scales(x_max[gr.x], w_max, self.alpha), get))
        linears = sum(len(gr.params) for gr in foldable)
        note = f"smoothed {len(foldable)} linear inputs ({linears} linears, alpha={self.alpha:g})"
        return PassResult(with_weights(graph, current), True, "; ".join([note, *notes]))
