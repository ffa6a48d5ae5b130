"""prune-ffn: remove a fraction of every FFN's hidden channels (issue 17, structured).

    prune-ffn(fraction=0.25, by=activation | taylor)

Kind: arch-change (the model needs fine-tuning after it; `--allow-arch-change`). The graph
physically shrinks: for each FFN (shrink.py finds them from the graph: plain, GLU with
separate gate and up, and every expert of a moe_experts node), int(F·fraction) channels go from
the up/gate rows (and biases) and the down columns, consistently; every backend then runs a
smaller matmul. A channel's importance is

- `activation`: ‖h_c‖₂·‖W_down[:, c]‖₂, h_c the channel's values on the calibration data (for
  an expert: on every calibration token), i.e. a bound on what the channel adds to the output:
  a channel whose down column is zero has importance 0 and removing it is exact;
- `taylor`: |Σ w·∂L/∂w| over the channel's up/gate row and down column (first-order change
  of the loss when the channel is removed), the gradients coming from the pass context's
  gradient provider (the CLI's torch backend; this pass never imports torch).

The least important channels go (ties: the later channel), each expert choosing its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from irgraph.errors import PassError
from irgraph.ir import Graph
from irgraph.passes.calibrate import Calibrator
from irgraph.passes.context import PassContext
from irgraph.passes.manager import ARCH_CHANGE, Pass, PassResult, option, register_pass
from irgraph.passes.prune.shrink import FfnGroup, ffn_groups, narrowed, shrunk


@register_pass
@dataclass(frozen=True)
class PruneFfn(Pass):
    name = "prune-ffn"
    kind = ARCH_CHANGE
    summary = "remove the least important FFN channels (GLU, MoE experts included)"
    fraction: float = option(0.25, min=0, doc="share of each FFN's channels removed, < 1")
    by: Literal["activation", "taylor"] = option("activation", doc="channel importance")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fraction < 1:
            raise PassError(
                "option 'fraction' of pass prune-ffn: every channel of an FFN would go",
                expected="0 <= fraction < 1",
                got=self.fraction,
            )

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        groups = ffn_groups(graph)
        if not groups or self.fraction == 0:
            return PassResult(graph, False, "no FFN channels to remove")
        widths = {_width(graph, g) for g in groups}
        if graph.weights is None:
            raise PassError("pass prune-ffn needs the graph's weights (it is structure only)")
        scores = self._importance(graph, groups, ctx)
        arrays: dict[str, np.ndarray] = {}
        for g in groups:
            s = scores[g.down]
            f = s.shape[-1]
            kept = f - int(f * self.fraction)
            # stable sort of -score: among equal scores the earlier channel stays
            order = np.argsort(-s, axis=-1, kind="stable")[..., :kept]
            arrays.update(narrowed(graph, g, np.sort(order, axis=-1)))
        result = shrunk(graph, arrays)
        after = {_width(result, g) for g in groups}
        note = (
            f"{len(groups)} FFNs: {'/'.join(map(str, sorted(widths)))} -> "
            f"{'/'.join(map(str, sorted(after)))} channels (by {self.by})"
        )
        return PassResult(result, True, note)

    def _importance(
        self, graph: Graph, groups: list[FfnGroup], ctx: PassContext
    ) -> dict[str, np.ndarray]:
        """Down weight name -> channel importance [F] (or [experts, F])."""
        batches = ctx.need_calibration(self)
        if self.by == "taylor":
            grads = ctx.need_gradients(self).gradients(graph, batches)
            return {g.down: _taylor(graph, g, grads) for g in groups}
        calibrator = Calibrator(graph, batches)
        moes = tuple(g.moe for g in groups if g.moe is not None)
        hessians = calibrator.hessians(
            [g.down_input for g in groups], {}, ctx.progress, "channel activations", moes
        )
        out = {}
        for g in groups:
            h = hessians[g.moe.outputs[0]] if g.moe is not None else hessians[g.down_input]
            norms = np.sqrt(np.maximum(np.diagonal(h, axis1=-2, axis2=-1), 0.0))
            down = np.asarray(graph.weight(g.down), np.float64)
            out[g.down] = norms * np.linalg.norm(down, axis=-2)
        return out


def _taylor(graph: Graph, g: FfnGroup, grads: Mapping[str, np.ndarray]) -> np.ndarray:
    """|Σ w·∂L/∂w| over each channel's rows, bias entries and down column."""
    total = np.zeros(np.asarray(graph.weight(g.down)).shape[:-2] + (_width(graph, g),))
    for name in g.params:
        if name not in grads:
            raise PassError(f"the gradient provider gave no gradient for @{name}")
        wg = np.asarray(graph.weight(name), np.float64) * np.asarray(grads[name], np.float64)
        if name == g.down:
            total += wg.sum(axis=-2)
        elif name in g.rows:
            total += wg.sum(axis=-1)
        else:  # a bias
            total += wg
    return np.abs(total)


def _width(graph: Graph, g: FfnGroup) -> int:
    return int(graph.params[g.down].type.shape[-1])  # type: ignore[arg-type]
