"""prune: zero a fraction of each linear weight, unstructured or N:M (issue 17).

    prune(method=magnitude | wanda | sparsegpt, sparsity=0.5, pattern="", group=row,
          allocation=uniform, owl_lambda=0.08, owl_m=5.0, skip="", damp=0.01, block=128)

Kind: approximate. Weights stay dense (pruned entries are exact zeros, every backend runs them
unchanged and no bytes are saved); irgraph/sparsity.py's record in the graph's meta says which
weights were pruned, in what pattern and how far. Pruned: every float weight read only as a
linear's weight, except the LM head (the published methods keep it dense) and `skip` globs;
embedding tables and MoE expert stacks stay dense, as do weights pruned before (prune once,
from the dense graph) and quantized ones (prune before quantizing).

- `magnitude`: the lowest |W| of each output row (masks.py). Needs no data.
- `wanda`: the lowest |W|·‖X_j‖₂ of each row, X the layer's calibration inputs.

`group` is the comparison group of the unstructured magnitude and Wanda masks: `row` (the
default, Wanda's per-output group) or `layer`, the whole weight at once. `magnitude` with
`group=layer` is the baseline the Wanda and SparseGPT papers compare against (Wanda's
`prune_magnitude` thresholds the flattened |W|); per row it is a stronger baseline (Wanda's
Table 6 ablation). SparseGPT chooses its mask per block of `block` columns, as published.
- `sparsegpt`: OBS reconstruction (sparsegpt.py, with GPTQ's Hessian machinery; `damp`,
  `block`); the remaining weights change to make up for the pruned ones.

The data methods calibrate stage by stage (passes/calibrate.py, as GPTQ does): each layer's
inputs come from the graph with the earlier layers already pruned.

`pattern="2:4"` (or "4:8", any N:M with N < M) keeps at most N nonzeros in every M consecutive
input columns of each row, for every method; the sparsity is then 1 - N/M and `sparsity` is
not given. `allocation=owl` (needs calibration data, unstructured only) gives each block
(`layers.<i>.`) its own sparsity from its share of outlier Wanda scores (masks.py).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from irgraph.errors import IRError, PassError
from irgraph.ir import Graph
from irgraph.passes.calibrate import Calibrator, linear_inputs, linear_stages
from irgraph.passes.context import PassContext
from irgraph.passes.manager import APPROXIMATE, Pass, PassResult, option, register_pass
from irgraph.passes.prune import masks, sparsegpt
from irgraph.passes.quantize.common import lm_head, parse_skip
from irgraph.sparsity import UNSTRUCTURED, Sparsity, parse_pattern, records, with_records
from irgraph.weights import WeightStore

SHARED = frozenset({"method", "sparsity", "pattern", "allocation", "owl_lambda", "owl_m", "skip"})
USES: dict[str, frozenset[str]] = {  # the options each method reads
    "magnitude": SHARED | {"group"},
    "wanda": SHARED | {"group"},
    "sparsegpt": SHARED | {"damp", "block"},
}
OWL_OPTIONS = frozenset({"owl_lambda", "owl_m"})
_BLOCK = re.compile(r"^((?:[A-Za-z_][\w-]*\.)+?\d+)\.")  # 'layers.3.attn.q.weight' -> 'layers.3'


@register_pass
@dataclass(frozen=True)
class Prune(Pass):
    name = "prune"
    kind = APPROXIMATE
    summary = "zero weights by magnitude, Wanda or SparseGPT; unstructured or N:M; OWL allocation"
    method: Literal["magnitude", "wanda", "sparsegpt"] = option("magnitude", doc="pruning method")
    sparsity: float = option(0.5, doc="fraction of each weight set to zero, 0 <= s < 1")
    pattern: str = option("", doc='N:M semi-structured pattern, e.g. "2:4"; "" = unstructured')
    group: Literal["row", "layer"] = option(
        "row", doc="magnitude, wanda: compare scores per output row or over the whole weight"
    )
    allocation: Literal["uniform", "owl"] = option("uniform", doc="per-layer sparsity")
    owl_lambda: float = option(0.08, min=0, doc="owl: layer sparsities within S +- lambda")
    owl_m: float = option(5.0, min=0, doc="owl: an outlier scores above m x its layer's mean")
    skip: str = option("", doc='comma-separated globs of weights kept dense, e.g. "*.o.weight"')
    damp: float = option(0.01, min=0, doc="sparsegpt: damping, a fraction of mean(diag H)")
    block: int = option(128, min=1, doc="sparsegpt: columns per lazy block update")

    def __post_init__(self) -> None:
        super().__post_init__()
        defaults = {f.name: f.default for f in fields(self)}
        unused = [
            n for n in defaults if n not in USES[self.method] and getattr(self, n) != defaults[n]
        ]
        if self.allocation != "owl":
            unused += [n for n in sorted(OWL_OPTIONS) if getattr(self, n) != defaults[n]]
        if unused:
            raise PassError(
                f"option(s) {', '.join(unused)} of pass prune are not used by "
                f"method={self.method}, allocation={self.allocation}",
                got=", ".join(f"{n}={getattr(self, n)}" for n in unused),
            )
        if not 0.0 <= self.sparsity < 1.0:
            raise PassError(
                "option 'sparsity' of pass prune", expected="0 <= sparsity < 1", got=self.sparsity
            )
        if self.pattern:
            try:
                parse_pattern(self.pattern)
            except IRError as e:
                raise PassError(
                    f"option 'pattern' of pass prune: {e.message}", expected=e.expected, got=e.got
                ) from None
            if self.group != "row":
                raise PassError(
                    f"pattern={self.pattern} groups columns within each row",
                    expected="group=row (the default) with a pattern",
                    got=f"group={self.group}",
                )
            if self.sparsity != defaults["sparsity"] or self.allocation != "uniform":
                raise PassError(
                    f"pattern={self.pattern} fixes the sparsity of every weight",
                    expected="pattern alone, or sparsity (and allocation) without a pattern",
                    got=f"sparsity={self.sparsity}, allocation={self.allocation}",
                )
        if self.allocation == "owl" and not (
            0 <= self.sparsity - self.owl_lambda and self.sparsity + self.owl_lambda < 1
        ):
            raise PassError(
                "owl layer sparsities sparsity +- owl_lambda must stay in [0, 1)",
                expected=f"owl_lambda <= {min(self.sparsity, 1 - self.sparsity):g}",
                got=f"sparsity={self.sparsity}, owl_lambda={self.owl_lambda}",
            )

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        names = self._select(graph)
        nm = parse_pattern(self.pattern) if self.pattern else None
        for name in names:
            k = graph.params[name].type.shape[-1]
            if nm is not None and (not isinstance(k, int) or k % nm[1]):
                raise PassError(
                    f"pattern {self.pattern} groups {nm[1]} input columns of @{name}",
                    expected=f"input features divisible by {nm[1]}",
                    got=f"{k}",
                )
        if not names or (self.sparsity == 0 and nm is None):
            return PassResult(graph, False, "no weights to prune")
        fractions = {name: 1 - nm[0] / nm[1] if nm else self.sparsity for name in names}
        if graph.weights is not None and self.allocation == "owl":
            fractions = self._owl(graph, names, ctx)
        pattern = self.pattern or UNSTRUCTURED
        new = {name: Sparsity(pattern, f) for name, f in fractions.items()}
        meta = with_records(graph.meta, new, graph.params)
        weights = graph.weights
        if graph.weights is not None:
            pruned = self._prune(graph, fractions, nm, ctx)
            stored = {n: pruned.get(n, graph.weights[n]) for n in graph.stored_names()}
            weights = WeightStore(stored)
        result = Graph(
            graph.name,
            dict(graph.inputs),
            dict(graph.params),
            list(graph.nodes),
            dict(graph.outputs),
            meta,
            weights,
        )
        mean = sum(fractions.values()) / len(fractions)
        how = f"{pattern}, {self.allocation}" if nm is None else pattern
        note = f"pruned {len(names)} weights ({self.method}, {how}, mean sparsity {mean:.3f})"
        return PassResult(result, True, note)

    def _select(self, graph: Graph) -> list[str]:
        """The weights to prune, in parameter order."""
        globs = parse_skip(self.skip, graph, "prune")
        linear_only: dict[str, bool] = {}
        for node in graph.nodes:
            for i, v in enumerate(node.inputs):
                if v is not None and v.param is not None:
                    ok = node.op == "linear" and i == 1
                    linear_only[v.param] = linear_only.get(v.param, True) and ok
        head = lm_head(graph)
        recorded = records(graph)
        chosen = []
        for name, v in graph.params.items():
            if not linear_only.get(name) or name == head or v.type.rank != 2:
                continue
            if any(fnmatch.fnmatchcase(name, g) for g in globs):
                continue
            if v.type.quant is not None or name in recorded:
                what = f"quantized ({v.type})" if v.type.quant else f"pruned ({recorded[name]})"
                raise PassError(
                    f"weight @{name} is already {what}",
                    expected="a dense float weight (prune once, before quantizing)",
                    got=str(v.type),
                )
            if v.type.dtype.is_float:
                chosen.append(name)
        return chosen

    def _prune(
        self,
        graph: Graph,
        fractions: dict[str, float],
        nm: tuple[int, int] | None,
        ctx: PassContext,
    ) -> dict[str, np.ndarray]:
        """The pruned arrays of the weights in `fractions`."""
        out: dict[str, np.ndarray] = {}
        if self.method == "magnitude":
            for i, (name, f) in enumerate(fractions.items()):
                ctx.progress(i, len(fractions), name)
                w = np.asarray(graph.weight(name))
                out[name] = np.where(self._mask(np.abs(w), f, nm), w, 0).astype(w.dtype)
            ctx.progress(len(fractions), len(fractions), "")
            return out
        batches = ctx.need_calibration(self)
        uses = linear_inputs(graph, fractions)
        stages = linear_stages(graph, uses)
        calibrator = Calibrator(graph, batches)
        for s, stage in enumerate(stages):
            what = f"{self.method} layer {s + 1}/{len(stages)}"
            hessians = calibrator.hessians(stage.inputs, out, ctx.progress, what)
            for name in stage.params:
                h = np.asarray(sum(hessians[x] for x in uses[name]) / len(uses[name]))
                w = np.asarray(graph.weight(name))
                if self.method == "wanda":
                    keep = self._mask(wanda_scores(w, h), fractions[name], nm)
                    out[name] = np.where(keep, w, 0).astype(w.dtype)
                    continue
                out[name], damp = sparsegpt.prune_weight(
                    w, h, fractions[name], nm, self.damp, self.block, name
                )
                if damp != self.damp:
                    ctx.log(f"warning: prune(method=sparsegpt) @{name}: damp raised to {damp}")
        return out

    def _mask(self, scores: np.ndarray, fraction: float, nm: tuple[int, int] | None) -> np.ndarray:
        if nm is not None:
            return masks.nm_mask(scores, *nm)
        if self.group == "layer":
            return masks.flat_mask(scores, fraction)
        return masks.row_mask(scores, fraction)

    def _owl(self, graph: Graph, names: list[str], ctx: PassContext) -> dict[str, float]:
        """Each weight's sparsity under OWL, from the dense graph's Wanda scores per block."""
        uses = linear_inputs(graph, names)
        calibrator = Calibrator(graph, ctx.need_calibration(self))
        scores: dict[str, list[np.ndarray]] = {}
        stages = linear_stages(graph, uses)
        for s, stage in enumerate(stages):
            what = f"owl outliers {s + 1}/{len(stages)}"
            hessians = calibrator.hessians(stage.inputs, {}, ctx.progress, what)
            for name in stage.params:
                h = sum(hessians[x] for x in uses[name]) / len(uses[name])
                score = wanda_scores(np.asarray(graph.weight(name)), np.asarray(h))
                scores.setdefault(block_of(name), []).append(score)
        blocks = list(scores)
        ratios = [masks.outlier_ratio(scores[b], self.owl_m) for b in blocks]
        per_block = dict(zip(blocks, masks.owl_sparsities(ratios, self.sparsity, self.owl_lambda)))
        return {name: per_block[block_of(name)] for name in names}


def wanda_scores(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """|W|·‖X_j‖₂ (up to one factor per weight, which no comparison sees) from H = 2XᵀX/rows."""
    return np.abs(np.asarray(w, np.float64)) * np.sqrt(np.maximum(np.diag(h), 0.0))


def block_of(name: str) -> str:
    """The block a weight belongs to for OWL: 'layers.3.attn.q.weight' -> 'layers.3' (a
    weight outside numbered blocks is a block of its own)."""
    m = _BLOCK.match(name)
    return m.group(1) if m else name
