"""Torch lowerings of the mixture-of-experts ops (meaning: `irgraph.ops.moe`).

`moe_experts` runs sparsely: the (token, slot) pairs are sorted by expert, each
expert multiplies only the tokens routed to it, and `index_add_` scatters the
weighted results back, so the cost is top_k/experts of running every expert on
every token (HF Mixtral's dispatch). Gradients reach the experts, the router
weights and the input. The per-expert token counts are data, which
`torch.export` cannot trace; under export the dense form runs instead (every
expert on every token, combined with the router's sparse matrix: same values
to float rounding), and under `torch.compile` the sparse form runs eagerly
behind a graph break.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from irgraph.codegen.torch.lowerings import ACTIVATIONS, TorchContext, f32, lowers
from irgraph.ir import Node

Tensor = torch.Tensor


@lowers("moe_router")
def _moe_router(
    ctx: TorchContext, node: Node, x: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    a = node.attrs
    top_k, scoring, normalize = a["top_k"], a["scoring"], a["normalize"]
    n_group, topk_group, scaling = a["n_group"], a["topk_group"], a["scaling"]
    logits = F.linear(f32(x), f32(weight)).float()  # (..., E)
    scores = torch.softmax(logits, dim=-1) if scoring == "softmax" else torch.sigmoid(logits)
    choose = scores.detach()  # the choice is discrete; gradients flow through the kept scores
    if n_group > 1:
        grouped = choose.reshape(*choose.shape[:-1], n_group, -1)  # (..., G, E/G)
        keep = torch.topk(grouped.amax(dim=-1), topk_group, dim=-1).indices
        group_mask = torch.zeros(grouped.shape[:-1], dtype=torch.bool, device=x.device).scatter(
            -1, keep, True
        )
        choose = choose.masked_fill(
            ~group_mask.repeat_interleave(grouped.shape[-1], dim=-1), float("-inf")
        )
    indices = torch.topk(choose, top_k, dim=-1).indices
    weights = torch.gather(scores, -1, indices)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights * scaling, indices


def expert_mlp(
    x: Tensor, w_up: Tensor, w_down: Tensor, w_gate: Tensor | None, fn: Callable[[Tensor], Tensor]
) -> Tensor:
    """One expert (or a batch of experts, with a leading expert axis on x and the weights)."""
    h = x @ w_up.transpose(-1, -2)
    h = fn(x @ w_gate.transpose(-1, -2)) * h if w_gate is not None else fn(h)
    return h @ w_down.transpose(-1, -2)


@torch.compiler.disable  # per-expert token counts are data: run eagerly inside a compiled model
def sparse_experts(
    xs: Tensor,
    weights: Tensor,
    indices: Tensor,
    w_up: Tensor,
    w_down: Tensor,
    w_gate: Tensor | None,
    fn: Callable[[Tensor], Tensor],
) -> Tensor:
    """Σ_k weights[t, k] · expert_{indices[t, k]}(xs[t]) for xs (T, H), weights/indices (T, K)."""
    k = indices.shape[1]
    flat = indices.reshape(-1)  # (T*K,) expert of each (token, slot)
    order = torch.argsort(flat, stable=True)  # (token, slot) pairs grouped by expert
    token = order // k  # (T*K,) token of each sorted pair
    counts = torch.bincount(flat, minlength=w_up.shape[0]).tolist()
    parts = []
    for e, rows in enumerate(
        torch.split(xs[token], counts)
    ):  # rows: (n_e, H), the tokens routed to e
        if rows.shape[0]:
            parts.append(
                expert_mlp(
                    rows,
                    f32(w_up[e]),
                    f32(w_down[e]),
                    f32(w_gate[e]) if w_gate is not None else None,
                    fn,
                )
            )
    if not parts:  # no tokens
        return torch.zeros_like(xs)
    y = torch.cat(parts)  # (T*K, H), in the dtype autocast chose for the matmuls
    y = y * weights.reshape(-1)[order].unsqueeze(-1).to(y.dtype)
    return y.new_zeros(xs.shape).index_add(0, token, y)


def dense_experts(
    xs: Tensor,
    weights: Tensor,
    indices: Tensor,
    w_up: Tensor,
    w_down: Tensor,
    w_gate: Tensor | None,
    fn: Callable[[Tensor], Tensor],
) -> Tensor:
    """The same sum with every expert run on every token: no data-dependent shapes (for export)."""
    combine = torch.zeros(xs.shape[0], w_up.shape[0], dtype=weights.dtype, device=xs.device)
    combine = combine.scatter_add(1, indices, weights)  # (T, E)
    # bmm over the expert axis (einsum and matmul special-case dims of 1, which export would pin).
    xe = xs.unsqueeze(0).expand(w_up.shape[0], -1, -1)  # (E, T, H)
    h = torch.bmm(xe, f32(w_up).transpose(1, 2))  # (E, T, F)
    h = fn(torch.bmm(xe, f32(w_gate).transpose(1, 2))) * h if w_gate is not None else fn(h)
    y = torch.bmm(h, f32(w_down).transpose(1, 2))  # every expert's output (E, T, H)
    return (combine.t().unsqueeze(-1).to(y.dtype) * y).sum(0)  # (T, H)


@lowers("moe_fixed_router")
def _moe_fixed_router(
    ctx: TorchContext, node: Node, ids: torch.Tensor, domain: torch.Tensor, table: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """experts = table[domain, ids], weight 1 (no gradient: nothing here is learned)."""
    experts = table[domain[:, None], ids].unsqueeze(-1)
    return torch.ones(experts.shape, dtype=torch.float32, device=experts.device), experts


@lowers("moe_experts")
def _moe_experts(
    ctx: TorchContext,
    node: Node,
    x: torch.Tensor,
    weights: torch.Tensor,
    indices: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    w_gate: torch.Tensor | None,
) -> tuple[torch.Tensor, ...]:
    act = node.attrs["act"]
    shape = x.shape
    xs = f32(x).reshape(-1, shape[-1])  # (T, H)
    ws, ids = weights.reshape(xs.shape[0], -1), indices.reshape(xs.shape[0], -1)  # (T, K)
    run = dense_experts if torch.compiler.is_exporting() else sparse_experts
    return (run(xs, ws, ids, w_up, w_down, w_gate, ACTIVATIONS[act]).reshape(shape),)
