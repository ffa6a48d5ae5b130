"""What `--check` reports for an approximate pass: per-layer and logits error on real token ids.

    report = layer_errors(before, after, ctx.calibration or random_batches(before, seed))
    report.layers   # (("layers.0.attn_norm.weight", 1.2e-4), ...): each layer's hidden state
    report.logits   # relative RMS error of the logits

Both graphs run in the interpreter on the same token ids (the calibration data when the pass
context has some, else random ids). A *layer* is a point where the hidden state can be compared
whatever the pass did to the weights: the input of every normalisation (the residual stream
entering each attention and MLP sub-block, the final norm, and q/k or latent norms), labelled
by that norm's weight parameter; add_rms_norm's sum is its residual input. Norms are matched
between the graphs by that name. AWQ scales a norm's weight and output, and pruning shrinks
the layers after one, but neither changes a norm's input, so these stay comparable where a
linear's output may not. The error at each point is the relative RMS over every calibration
token, ‖after − before‖ / ‖before‖, so it grows layer by layer as the pass's error accumulates;
the logits get the same measure and the relative max error the random-io check uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from irgraph.ir import Graph, Value
from irgraph.lm import LOGITS
from irgraph.passes.calibrate import evaluate, feeds_for
from irgraph.passes.context import Progress, no_progress
from irgraph.registry import Category, get_op

RANDOM_BATCH, RANDOM_SEQ = 2, 16  # the ids used when the pass context has no calibration data


@dataclass(frozen=True)
class LayerErrors:
    layers: tuple[tuple[str, float], ...]  # (norm weight name, relative RMS error), graph order
    logits: float  # relative RMS error of the logits
    logits_max: float  # max |after - before| / max(1, max |before|) of the logits
    data: str  # "calibration data (16 x 512 tokens)" or "random ids (2 x 16 tokens)"

    def lines(self) -> list[str]:
        """For people: one line per layer, then the logits."""
        width = max((len(name) for name, _ in self.layers), default=0)
        out = [
            f"error on {self.data}, relative RMS ‖after - before‖ / ‖before‖ of the hidden "
            "state entering each norm, then of the logits:"
        ]
        out += [f"  {name:<{width}}  {err:.3e}" for name, err in self.layers]
        out.append(f"  logits: {self.logits:.3e} (max relative {self.logits_max:.3e})")
        return out


def layer_points(graph: Graph) -> dict[str, Value]:
    """Norm weight name -> the hidden state that norm reads (module docstring), graph order."""
    points: dict[str, Value] = {}
    for node in graph.nodes:
        opdef = get_op(node.op)
        if opdef.category != Category.NORM:
            continue
        weight = next((v for v in node.inputs if v is not None and v.param is not None), None)
        x = node.outputs[0] if node.op == "add_rms_norm" else node.inputs[0]
        if weight is not None and weight.param is not None and x is not None:
            points.setdefault(weight.param, x)
    return points


def random_batches(graph: Graph, seed: int) -> list[np.ndarray]:
    """One batch of random token ids [RANDOM_BATCH, RANDOM_SEQ] inside the vocabulary."""
    vocab = graph.outputs[LOGITS].type.shape[-1]
    rng = np.random.default_rng(seed)
    high = vocab if isinstance(vocab, int) else 2
    return [rng.integers(0, high, size=(RANDOM_BATCH, RANDOM_SEQ), dtype=np.int64)]


def layer_errors(
    before: Graph,
    after: Graph,
    batches: Sequence[np.ndarray],
    *,
    progress: Progress = no_progress,
) -> LayerErrors:
    """Errors of `after` against `before` at every shared layer point and at the logits."""
    p_before, p_after = layer_points(before), layer_points(after)
    names = [
        n for n in p_before if n in p_after and p_before[n].type.shape == p_after[n].type.shape
    ]
    sq_diff = dict.fromkeys([*names, LOGITS], 0.0)
    sq_ref = dict.fromkeys([*names, LOGITS], 0.0)
    worst, top = 0.0, 1.0
    for b, ids in enumerate(batches):
        progress(b, len(batches), "layer errors")
        ref = _run(before, ids, [p_before[n] for n in names])
        got = _run(after, ids, [p_after[n] for n in names])
        for name, r, g in zip([*names, LOGITS], ref, got):
            sq_diff[name] += float(np.sum(np.square(g - r, dtype=np.float64)))
            sq_ref[name] += float(np.sum(np.square(r, dtype=np.float64)))
        worst = max(worst, float(np.max(np.abs(got[-1] - ref[-1]), initial=0.0)))
        top = max(top, float(np.max(np.abs(ref[-1]), initial=0.0)))
    progress(len(batches), len(batches), "layer errors")
    rel = {n: float(np.sqrt(sq_diff[n] / sq_ref[n])) if sq_ref[n] else 0.0 for n in sq_diff}
    tokens = sum(int(ids.size) for ids in batches)
    rows = ", ".join(sorted({f"{ids.shape[0]} x {ids.shape[1]}" for ids in batches}))
    data = f"{tokens} tokens ({len(batches)} batches of {rows})"
    return LayerErrors(tuple((n, rel[n]) for n in names), rel[LOGITS], worst / top, data)


def _run(graph: Graph, ids: np.ndarray, points: Sequence[Value]) -> list[np.ndarray]:
    """float32 values of `points`, then of the logits, for token ids `ids` (sums are float64)."""
    logits = graph.outputs[LOGITS]
    values = evaluate(graph, feeds_for(graph, ids), {*points, logits}, {})
    return [np.asarray(values[v], np.float32) for v in (*points, logits)]
