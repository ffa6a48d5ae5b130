"""Calibration statistics for data-driven passes (quantize, prune): the inputs of each linear.

    calibrator = Calibrator(graph, batches)
    for stage in linear_stages(graph, linear_inputs(graph, names)):
        hessians = calibrator.hessians(stage.inputs, weights, progress, what)
        ... quantize stage.params, put their dequantized values into `weights` ...

A *stage* (a "layer" in the GPTQ paper's sequential order) is a set of linear weights whose
inputs do not depend on one another: q/k/v after a norm, then o, then gate/up, then down, then
the next block's q/k/v. Stage s holds the linears whose input lies behind s other quantized
linears, found from the graph (no names are read). Each stage is calibrated by running the
interpreter's own op references on the graph with the already-quantized weights of earlier
stages replaced by their dequantized values (what the quantized graph computes), so later
layers see the errors of earlier ones. Runs stop at the last value the stage needs and drop
every value after its last use; each batch resumes where the previous stage stopped, so the
whole calibration costs about one run of the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from irgraph.activations import ACTIVATIONS
from irgraph.errors import PassError
from irgraph.ir import Graph, Node, Value
from irgraph.lm import empty_cache, graph_inputs, is_encoder_decoder, make_feeds
from irgraph.passes.context import Progress
from irgraph.registry import get_op


@dataclass(frozen=True)
class Stage:
    """Weights quantized together, and the distinct activations (linear inputs) they read.

    `experts`: the moe_experts nodes whose w_down this stage holds; `Calibrator.hessians`
    gives their per-expert statistics (`inputs` then holds each node's x).
    """

    params: tuple[str, ...]
    inputs: tuple[Value, ...]
    experts: tuple[Node, ...] = ()


EXPERT_STACKS = ("w_up", "w_gate", "w_down")  # moe_experts' stacked weights [experts, N, K]


def expert_stacks(graph: Graph, names: Collection[str]) -> dict[str, tuple[Node, str]]:
    """Param -> (moe_experts node, "w_up" | "w_gate" | "w_down") for the stacks in `names`."""
    found: dict[str, tuple[Node, str]] = {}
    for node in graph.nodes:
        if node.op != "moe_experts":
            continue
        slots = get_op(node.op).inputs
        for role in EXPERT_STACKS:
            v = node.inputs[slots.index(role + "?" if role == "w_gate" else role)]
            if v is not None and v.param is not None and v.param in names:
                found[v.param] = (node, role)
    return found


def linear_inputs(graph: Graph, names: Collection[str]) -> dict[str, list[Value]]:
    """Param -> the activations x of every `linear(x, @param)` reading it, for params in `names`."""
    uses: dict[str, list[Value]] = {}
    for node in graph.nodes:
        x, w = node.inputs[:2] if node.op == "linear" else (None, None)
        if x is not None and w is not None and w.param is not None and w.param in names:
            if x not in uses.get(w.param, []):
                uses.setdefault(w.param, []).append(x)
    return uses


def linear_stages(
    graph: Graph,
    uses: Mapping[str, Sequence[Value]],
    experts: Mapping[str, tuple[Node, str]] | None = None,
) -> list[Stage]:
    """`uses` (param -> its linears' inputs) and `experts` (expert_stacks) grouped into
    stages, in dependency order.

    depth(v) counts the quantized linears on the longest path to v (a moe_experts node with
    quantized stacks counts two: up/gate, then down); a weight's stage is the largest depth
    among its inputs; an expert stack's is its node's x depth, plus one for w_down.
    """
    experts = experts or {}
    quantized = {
        id(node): 1
        for node in graph.nodes
        if node.op == "linear" and node.inputs[1] is not None and node.inputs[1].param in uses
    }
    quantized.update({id(node): 2 for node, _ in experts.values()})
    depth: dict[Value, int] = {}
    for node in graph.nodes:
        d = max((depth.get(v, 0) for v in node.inputs if v is not None), default=0)
        for out in node.outputs:
            depth[out] = d + quantized.get(id(node), 0)
    by_stage: dict[int, list[str]] = {}
    reads: dict[str, list[Value]] = {name: list(xs) for name, xs in uses.items()}
    for name, xs in uses.items():
        by_stage.setdefault(max(depth.get(x, 0) for x in xs), []).append(name)
    for name, (node, role) in experts.items():
        x = node.inputs[0]
        assert x is not None  # moe_experts requires x
        reads[name] = [x]
        by_stage.setdefault(depth.get(x, 0) + (role == "w_down"), []).append(name)
    stages = []
    for s in sorted(by_stage):
        params = tuple(by_stage[s])
        inputs = tuple(dict.fromkeys(x for p in params for x in reads[p]))
        downs = tuple(experts[p][0] for p in params if p in experts and experts[p][1] == "w_down")
        stages.append(Stage(params, inputs, downs))
    return stages


def expert_count(node: Node) -> int:
    """Experts in a moe_experts node's stacks (w_up [experts, ffn, hidden])."""
    up = node.inputs[get_op(node.op).inputs.index("w_up")]
    n = up.type.shape[0] if up is not None else None
    if not isinstance(n, int):
        raise PassError("moe_experts needs a concrete expert count", got=str(n))
    return n


def expert_hidden(
    node: Node, x: np.ndarray, weight: Callable[[str], np.ndarray], expert: int
) -> np.ndarray:
    """The input of expert `expert`'s down projection for every row of x [rows, hidden]:
    act(x·W_gateᵀ)·(x·W_upᵀ), or act(x·W_upᵀ) without a gate (what moe_experts computes)."""
    slots = get_op(node.op).inputs
    up = node.inputs[slots.index("w_up")]
    gate = node.inputs[slots.index("w_gate?")]
    assert up is not None and up.param is not None  # expert_stacks reads params only
    fn = ACTIVATIONS[node.attrs["act"]].fn
    xs = x.astype(np.float32)
    h = xs @ weight(up.param)[expert].astype(np.float32).T
    if gate is None or gate.param is None:
        return np.asarray(fn(h))
    return np.asarray(fn(xs @ weight(gate.param)[expert].astype(np.float32).T) * h)


class Calibrator:
    """The graph run on the calibration batches, stage by stage, resuming where it stopped.

    Each batch keeps the values still needed past the last node it ran, so stage s continues
    from stage s-1's stopping point instead of rerunning the graph from the start. If a node
    already run reads a weight whose value has changed since (the order of nodes put it before
    the stopping point), that batch starts again from the first node.
    """

    def __init__(self, graph: Graph, batches: Sequence[np.ndarray]):
        self.graph = graph
        self.batches = list(batches)
        self.last_use: dict[Value, int] = {}
        for i, node in enumerate(graph.nodes):
            for v in node.inputs:
                if v is not None:
                    self.last_use[v] = i
        self.params = {v: name for name, v in graph.params.items()}
        self.readers: dict[str, int] = {}  # param -> first node reading it
        for i, node in enumerate(graph.nodes):
            for v in node.inputs:
                if v is not None and v.param is not None:
                    self.readers.setdefault(v.param, i)
        self.states: list[tuple[int, dict[Value, np.ndarray]]] = [(0, {}) for _ in self.batches]
        self.used: dict[str, np.ndarray] = {}  # the weight values the states were computed with
        self.restarts = 0  # batches run again from the first node

    def hessians(
        self,
        inputs: Sequence[Value],
        weights: Mapping[str, np.ndarray],
        progress: Progress,
        what: str,
        experts: Sequence[Node] = (),
    ) -> dict[Value, np.ndarray]:
        """H = 2·XᵀX / rows (float64 [K, K]) of each activation in `inputs` over all batches.

        X is the activation with its leading axes flattened to rows (one per token). `weights`
        replaces graph weights by name (the dequantized values of already-quantized ones).
        For each moe_experts node in `experts` (its x among `inputs`), the entry keyed by its
        output is [experts, F, F]: each expert's down-projection input Hessian with *every*
        token run through it (expert_hidden), so an expert the router rarely picks still gets
        full statistics.
        """

        def weight(name: str) -> np.ndarray:
            return weights[name] if name in weights else self.graph.weight(name)

        changed = [n for n, w in weights.items() if self.used.get(n) is not w]
        restart = min((self.readers.get(n, len(self.graph.nodes)) for n in changed), default=-1)
        self.used = dict(weights)
        targets = set(inputs)
        stop = _last_producer(self.graph.nodes, targets)
        sums: dict[Value, np.ndarray] = {}
        rows = 0
        for b, ids in enumerate(self.batches):
            progress(b, len(self.batches), what)
            done, values = self.states[b]
            if (
                restart >= 0
                and restart < done
                or not all(x in values for x in inputs if self._index(x) < done)
            ):
                done, values = 0, {}
                self.restarts += 1
            if done == 0:
                values = self._feeds(ids)
            done = self._run(values, done, stop + 1, weights, targets)
            for x in inputs:
                a = values[x].reshape(-1, values[x].shape[-1]).astype(np.float64)
                sums[x] = sums[x] + 2.0 * (a.T @ a) if x in sums else 2.0 * (a.T @ a)
            for node in experts:
                moe_x = node.inputs[0]
                assert moe_x is not None  # moe_experts requires x
                a = values[moe_x].reshape(-1, values[moe_x].shape[-1])
                hs = [
                    expert_hidden(node, a, weight, e).astype(np.float64)
                    for e in range(expert_count(node))
                ]
                stacked = np.stack([2.0 * (h.T @ h) for h in hs])
                out = node.outputs[0]
                sums[out] = sums[out] + stacked if out in sums else stacked
            rows += int(np.prod(values[inputs[0]].shape[:-1]))
            for x in inputs:  # targets no later node reads
                if self.last_use.get(x, -1) < done:
                    values.pop(x, None)
            self.states[b] = (done, values)
        progress(len(self.batches), len(self.batches), what)
        return {x: h / max(rows, 1) for x, h in sums.items()}

    def _index(self, v: Value) -> int:
        return next(i for i, n in enumerate(self.graph.nodes) if v in n.outputs)

    def _feeds(self, ids: np.ndarray) -> dict[Value, np.ndarray]:
        feeds = feeds_for(self.graph, ids)
        return {
            v: np.asarray(feeds[name]).astype(v.type.dtype.numpy, copy=False)
            for name, v in self.graph.inputs.items()
            if name in feeds
        }

    def _run(
        self,
        values: dict[Value, np.ndarray],
        start: int,
        stop: int,
        weights: Mapping[str, np.ndarray],
        targets: set[Value],
    ) -> int:
        """Run nodes [start, stop) into `values`, dropping each value after its last use."""
        for i in range(start, stop):
            node = self.graph.nodes[i]
            opdef = get_op(node.op)
            args: list[np.ndarray | None] = []
            for v in node.inputs:
                if v is None:
                    args.append(None)
                elif v in values:
                    args.append(values[v])
                else:  # a parameter, read where it is used
                    name = self.params[v]
                    args.append(weights[name] if name in weights else self.graph.weight(name))
            results = opdef.ref(*opdef.pad(args), **node.attrs)
            for out, res in zip(node.outputs, results):
                if out in self.last_use or out in targets:  # outputs nothing reads are dropped
                    values[out] = np.asarray(res).astype(out.type.dtype.numpy, copy=False)
            for v in node.inputs:
                if v is not None and self.last_use.get(v) == i and v not in targets:
                    values.pop(v, None)
        return max(start, stop)


def feeds_for(graph: Graph, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Prefill feeds for token ids [batch, seq] (an encoder-decoder reads them on both sides)."""
    inputs = graph_inputs(graph)
    cache = empty_cache(inputs, ids.shape[0])
    extra = {"encoder_ids": ids} if is_encoder_decoder(inputs) else {}
    return make_feeds(inputs, ids, cache, past_len=0, **extra)


def evaluate(
    graph: Graph,
    feeds: Mapping[str, np.ndarray],
    targets: set[Value],
    weights: Mapping[str, np.ndarray],
) -> dict[Value, np.ndarray]:
    """The values in `targets` for `feeds`, running the graph's nodes in order as far as needed.

    Numerics are the interpreter's (each op's registry `ref`, results stored in the declared
    dtype), with `weights` replacing graph weights by name.
    """
    calibrator = Calibrator(graph, [])
    values = {
        v: np.asarray(feeds[name]).astype(v.type.dtype.numpy, copy=False)
        for name, v in graph.inputs.items()
        if name in feeds
    }
    calibrator._run(values, 0, _last_producer(graph.nodes, targets) + 1, weights, targets)
    return {v: values[v] for v in targets}


def _last_producer(nodes: Sequence[Node], targets: set[Value]) -> int:
    last = -1
    for i, node in enumerate(nodes):
        if any(o in targets for o in node.outputs):
            last = i
    return last
