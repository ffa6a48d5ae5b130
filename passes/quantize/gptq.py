"""GPTQ (Frantar et al. 2022): round one column at a time, moving each error onto later columns.

For a linear y = x·Wᵀ with calibration inputs X, H = 2·XᵀX / rows is the Hessian of the layer's
squared output error. Columns (input features) are rounded in order; the rounding error of
column j, scaled by the inverse Hessian, is subtracted from the columns not yet rounded, so they
absorb it (the Optimal Brain Surgeon update, with the upper Cholesky factor of H⁻¹ as in the
paper). Details, as in the reference implementation (IST-DASLab/gptq) and AutoGPTQ:

- dead inputs and damping are passes/obs.py's (shared with SparseGPT): a dead input gets a
  zero column; damping is raised tenfold when Cholesky fails and the weight is reported;
- updates are lazy in blocks of `block` columns (one matrix product per block);
- act_order rounds columns in order of decreasing H[j, j] with *static groups*: each group's
  scale and zero point are chosen on the original columns before permuting, so the stored
  weight is in the original order and kernels need no permutation index. Without act_order,
  a group's grid is chosen from the updated columns when its first column comes up.

The grid and rounding are irgraph.quant's (as RTN's): `choose_scales` picks each group's scale
in the stored scale dtype (with `mse`, scale_search.py searches it, once per group, where the
grid is chosen), and columns round against it with round-half-to-even and clamp; the stored
arrays come from `quantize_arrays`, so with H = I the result is exactly RTN's (with the same
`mse`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from irgraph import sparsity
from irgraph.ir import Graph, Node, Value
from irgraph.passes import obs
from irgraph.passes.calibrate import Calibrator, expert_stacks, linear_inputs, linear_stages
from irgraph.passes.context import PassContext
from irgraph.passes.quantize import rtn
from irgraph.passes.quantize.scale_search import search_scales
from irgraph.quant import QuantSpec, choose_scales, dequantize, quantize_arrays


@dataclass(frozen=True)
class Options:
    damp: float = 0.01
    block: int = 128
    act_order: bool = True
    mse: bool = False  # search each group's scale (scale_search.py) instead of min/max


def quantize_graph(
    graph: Graph, specs: Mapping[str, QuantSpec], opts: Options, ctx: PassContext, p: Any
) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Stored arrays of every weight in `specs`, and notes for people (raised damping, RTN ones).

    `p` is the pass, named when calibration data is missing. Weights read by linears are
    GPTQ'd stage by stage (calibrate.py), each stage calibrated with the earlier stages
    already quantized. MoE expert stacks are GPTQ'd expert by expert: up/gate on the Hessian
    of the experts' input, down on each expert's own hidden activations, every expert fed
    every calibration token whatever the router picks (routers stay float). Weights read
    otherwise (embedding tables, a table tied to the LM head) are rounded to nearest, before
    any stage runs.
    """
    uses = linear_inputs(graph, specs)
    readers: dict[str, set[str]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            if v is not None and v.param is not None:
                readers.setdefault(v.param, set()).add(node.op)
    gptq = {name: xs for name, xs in uses.items() if readers[name] == {"linear"}}
    experts = {
        name: use
        for name, use in expert_stacks(graph, specs).items()
        if readers[name] == {"moe_experts"}
    }
    batches = ctx.need_calibration(p) if gptq or experts else ()
    arrays: dict[str, dict[str, np.ndarray]] = {}
    current: dict[str, np.ndarray] = {}  # dequantized values of the weights quantized so far
    for name, spec in specs.items():
        if name not in gptq and name not in experts:
            arrays[name] = rtn.quantize_weight(np.asarray(graph.weight(name)), spec, opts.mse)
            current[name] = _dequantized(graph, name, spec, arrays[name])
    rounded = len(specs) - len(gptq) - len(experts)
    notes = [f"{rounded} weights not read by a linear rounded to nearest"] if rounded else []
    stages = linear_stages(graph, gptq, experts)
    pruned = sparsity.records(graph)
    calibrator = Calibrator(graph, batches)
    for s, stage in enumerate(stages):
        what = f"gptq layer {s + 1}/{len(stages)}"
        hessians = calibrator.hessians(stage.inputs, current, ctx.progress, what, stage.experts)
        for name in stage.params:
            w = np.asarray(graph.weight(name), np.float32)
            if name in experts:  # one GPTQ per expert, each on every calibration token
                arrays[name], damp = _quantize_experts(
                    w, hessians, experts[name], specs[name], opts, name
                )
            else:
                h = sum(hessians[x] for x in gptq[name]) / len(gptq[name])
                keep = sparsity.mask(w) if name in pruned else None
                arrays[name], damp = quantize_weight(
                    w, np.asarray(h), specs[name], opts, name, keep
                )
            current[name] = _dequantized(graph, name, specs[name], arrays[name])
            if damp != opts.damp:
                note = f"@{name}: Cholesky failed at damp={opts.damp}, quantized at damp={damp}"
                ctx.log(f"warning: quantize(method=gptq) {note}")
                notes.append(note)
    if experts:
        notes.append(
            f"{len(experts)} expert stacks quantized expert by expert, every expert calibrated "
            "on every token"
        )
    return arrays, notes


def _quantize_experts(
    w: np.ndarray,
    hessians: Mapping[Value, np.ndarray],
    use: tuple[Node, str],
    spec: QuantSpec,
    opts: Options,
    name: str,
) -> tuple[dict[str, np.ndarray], float]:
    """(stored arrays, largest damping used) of an expert stack w [experts, N, K], GPTQ'd
    expert by expert: up/gate on the Hessian of the experts' input x, down on each expert's
    own (Calibrator.hessians keys those [experts, F, F] by the moe node's output)."""
    node, role = use
    x = node.inputs[0]
    assert x is not None  # moe_experts requires x
    hs = hessians[node.outputs[0]] if role == "w_down" else [hessians[x]] * len(w)
    done = [quantize_weight(w[e], hs[e], spec, opts, f"{name}[{e}]") for e in range(len(w))]
    return {k: np.stack([d[0][k] for d in done]) for k in done[0][0]}, max(d[1] for d in done)


def _dequantized(
    graph: Graph, name: str, spec: QuantSpec, stored: Mapping[str, np.ndarray]
) -> np.ndarray:
    shape = tuple(int(d) for d in graph.params[name].type.shape)  # type: ignore[arg-type]
    return dequantize(spec, shape, stored)


def quantize_weight(
    w: np.ndarray,
    h: np.ndarray,
    spec: QuantSpec,
    opts: Options,
    name: str = "weight",
    keep: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], float]:
    """(stored arrays, damping used) of w [N, K] with Hessian h [K, K] (float64).

    `keep` (bool [N, K]), for a pruned weight (irgraph/sparsity.py), holds its kept entries:
    the others are rounded to exactly 0 and their error spreads to later columns, so the
    quantized weight keeps the pruning pattern (SparseGPT's joint prune-and-quantize).
    """
    n, k = w.shape
    w, h = obs.dead_inputs(w, h)
    g = spec.group_size(k)
    blocks = spec.blocks(k)
    scales = np.zeros((n, blocks), spec.scale_dtype.numpy)
    zeros = None if spec.sym else np.zeros((n, blocks), np.int8)
    static = opts.act_order or spec.group == 0
    pick = search_scales if opts.mse else choose_scales
    if static:  # every group's grid from the original columns, in their original order
        scales, zeros = pick(w.astype(np.float32), spec)
    perm = np.argsort(-np.diag(h), kind="stable") if opts.act_order else np.arange(k)
    if opts.act_order:
        w, h = w[:, perm], h[np.ix_(perm, perm)]
    kept = np.ones(w.shape, bool) if keep is None else np.asarray(keep, bool)[:, perm]
    hinv, damp = obs.inverse_factor(h, opts.damp, name, "quantize(method=gptq)")
    q = np.zeros_like(w)
    for i1 in range(0, k, opts.block):
        i2 = min(i1 + opts.block, k)
        err = np.zeros((n, i2 - i1))
        for i in range(i1, i2):
            col = perm[i]
            b = col // g
            if not static and col % g == 0:  # a new group: its grid from the updated columns
                s_b, z_b = pick(w[:, col : col + g].astype(np.float32), spec)
                scales[:, b] = s_b[:, 0]
                if zeros is not None and z_b is not None:
                    zeros[:, b] = z_b[:, 0]
            z = None if zeros is None else zeros[:, b]
            q[:, i] = np.where(kept[:, i], _round(w[:, i], scales[:, b], z, spec), 0.0)
            e = (w[:, i] - q[:, i]) / hinv[i, i]
            w[:, i:i2] -= np.outer(e, hinv[i, i:i2])
            err[:, i - i1] = e
        w[:, i2:] -= err @ hinv[i1:i2, i2:]
    q = q[:, np.argsort(perm)]
    return quantize_arrays(q.astype(np.float32), spec, scales, zeros), damp


def _round(
    col: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, spec: QuantSpec
) -> np.ndarray:
    """Column `col` [N] rounded on its grid and dequantized: irgraph.quant's arithmetic, in f32."""
    s = scale.astype(np.float32)
    z = np.zeros_like(s) if zero is None else zero.astype(np.float32)
    x = col.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s > 0, np.round(x / s) + z, z)
    return ((np.clip(q, spec.qmin, spec.qmax) - z) * s).astype(np.float64)
