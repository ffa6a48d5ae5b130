"""AWQ's block objective: a norm-fed group's error measured where the block rejoins the stream.

llm-awq (auto_scale.py) scores q/k/v by the whole attention module's output and gate/up by the
MLP's output, not by the linears' own outputs: an error in q or k matters only through the
softmax, and one in gate only through the GLU product. Here the same holds for any graph: for
a group whose input x is a norm of the residual stream r, the block's output is the value
r + (what the block adds): the first `add` reading r and a value computed from the group's
linears, followed along the chain of such adds (a parallel block adds attention and MLP in
turn). Its error is the error of what the block adds, r being fixed.

The calibration windows run once up to the group's first linear; each candidate scale then
reruns only the nodes from there to the block output, with the group's weights rounded (the
rest of the block float, as in llm-awq). A group whose block output is not found this way
(x not a norm's output; no residual add) keeps the per-linear objective.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from irgraph.ir import Graph, Value
from irgraph.passes.calibrate import Calibrator
from irgraph.passes.scale_fold import NORMS, Group

RESIDUAL_ADDS = {"add"}


def block_output(graph: Graph, group: Group) -> tuple[int, int, Value] | None:
    """(first node to rerun, one past the last, the block output) of a norm-fed group."""
    producers = graph.producers()
    norm = producers.get(group.x)
    if norm is None or norm.op not in NORMS or norm.op == "add_rms_norm" or not norm.inputs:
        return None
    stream = norm.inputs[0]
    params = set(group.params)
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    start = min(
        (i for i, n in enumerate(graph.nodes) if any(v and v.param in params for v in n.inputs)),
        default=None,
    )
    if start is None:
        return None
    cone: set[Value] = set()  # values computed from the group's linears
    end: Value | None = None
    for i in range(start, len(graph.nodes)):
        node = graph.nodes[i]
        reads_group = any(v is not None and (v in cone or v.param in params) for v in node.inputs)
        if not reads_group:
            continue
        if node.op in RESIDUAL_ADDS and end is None and stream in node.inputs:
            end = node.outputs[0]
        elif node.op in RESIDUAL_ADDS and end is not None and end in node.inputs:
            end = node.outputs[0]  # the stream, with one more of the block's branches added
        elif end is not None and any(v is end for v in node.inputs):
            break
        cone.update(node.outputs)
    if end is None:
        return None
    stop = index[id(producers[end])] + 1
    return start, stop, end


class BlockLoss:
    """Mean squared error of a group's block output with its weights replaced, on `windows`."""

    def __init__(
        self,
        graph: Graph,
        span: tuple[int, int, Value],
        windows: Sequence[np.ndarray],
        weights: Mapping[str, np.ndarray],
    ):
        self.start, self.stop, self.out = span
        self.runner = Calibrator(graph, [])
        self.weights = dict(weights)
        self.before = []
        for ids in windows:
            values = self.runner._feeds(ids)
            self.runner._run(values, 0, self.start, self.weights, set())
            self.before.append(values)
        self.reference = [self._run(v, self.weights) for v in self.before]

    def _run(
        self, before: dict[Value, np.ndarray], weights: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        values = dict(before)
        self.runner._run(values, self.start, self.stop, weights, {self.out})
        return np.asarray(values[self.out], np.float64)

    def __call__(self, replaced: Mapping[str, np.ndarray]) -> float:
        weights = {**self.weights, **replaced}
        total, count = 0.0, 0
        for before, ref in zip(self.before, self.reference):
            err = self._run(before, weights) - ref
            total += float(np.sum(np.square(err)))
            count += err.size
        return total / max(count, 1)


def windows_for(batches: Sequence[np.ndarray], tokens: int) -> list[np.ndarray]:
    """The first calibration batches holding at least `tokens` tokens (all of them if fewer)."""
    out: list[np.ndarray] = []
    seen = 0
    for ids in batches:
        if seen >= tokens:
            break
        out.append(ids)
        seen += int(np.asarray(ids).size)
    return out
