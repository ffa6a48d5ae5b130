"""MoE router and experts against a straightforward torch loop (fp32, <= 1e-5).

The torch side is written the way the model code reads (Mixtral's softmax →
top-k → renormalise; DeepSeek-V2's group-limited greedy routing with
routed_scaling_factor), one token at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irgraph import IRError
from tests.helpers.op_util import close, randn, run_op

RNG = np.random.default_rng(5)
T = torch.from_numpy


def torch_router(
    x, weight, top_k, scoring="softmax", normalize=True, n_group=1, topk_group=1, scaling=1.0
):
    logits = T(x).reshape(-1, x.shape[-1]) @ T(weight).T  # (tokens, E)
    scores = logits.softmax(-1) if scoring == "softmax" else logits.sigmoid()
    weights, indices = [], []
    for row in scores:
        candidates = row
        if (
            n_group > 1
        ):  # DeepSeek-V2 group_limited_greedy: best experts inside the best groups only
            groups = row.view(n_group, -1)
            best_groups = groups.max(-1).values.topk(topk_group).indices
            keep = torch.zeros(n_group, dtype=torch.bool)
            keep[best_groups] = True
            candidates = row.masked_fill(~keep.repeat_interleave(groups.shape[1]), float("-inf"))
        idx = candidates.topk(top_k).indices
        w = row[idx]
        if normalize:  # Mixtral norm_topk_prob; Switch-style top-1 routers set normalize=False
            w = w / w.sum()
        weights.append(w * scaling)
        indices.append(idx)
    shape = (*x.shape[:-1], top_k)
    return torch.stack(weights).reshape(shape), torch.stack(indices).reshape(shape)


ROUTERS = [
    {"top_k": 2},  # Mixtral
    {"top_k": 2, "normalize": False},
    {"top_k": 1},
    {"top_k": 3, "scoring": "sigmoid"},
    {"top_k": 3, "scoring": "sigmoid", "normalize": True, "scaling": 2.5},
    {"top_k": 3, "n_group": 4, "topk_group": 2, "normalize": False, "scaling": 16.0},  # DeepSeek-V2
    {"top_k": 2, "n_group": 8, "topk_group": 1},
]


@pytest.mark.parametrize("attrs", ROUTERS, ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()))
def test_router(attrs):
    x, weight = randn(RNG, 3, 7, 12), randn(RNG, 16, 12)
    weights, indices = run_op("moe_router", x, weight, **attrs)
    want_w, want_i = torch_router(x, weight, **attrs)
    assert indices.dtype == np.int64 and weights.dtype == np.float32
    np.testing.assert_array_equal(indices, want_i.numpy())
    close(weights, want_w)


def test_group_limited_routing_stays_inside_the_chosen_groups():
    x, weight = randn(RNG, 50, 12), randn(RNG, 16, 12)
    _, indices = run_op("moe_router", x, weight, top_k=4, n_group=4, topk_group=2)
    groups = indices // 4
    assert all(len(set(row)) <= 2 for row in groups.tolist())
    _, free = run_op("moe_router", x, weight, top_k=4)
    assert any(len(set(row)) > 2 for row in (free // 4).tolist())  # the limit actually bites


def test_router_rejects_bad_groups():
    with pytest.raises(IRError, match="n_group groups"):
        run_op("moe_router", randn(RNG, 2, 12), randn(RNG, 16, 12), top_k=2, n_group=3)
    with pytest.raises(IRError, match="top_k must be in 1..experts"):
        run_op("moe_router", randn(RNG, 2, 12), randn(RNG, 16, 12), top_k=17)
    with pytest.raises(IRError, match=r"top_k <= 8"):  # 2 kept groups of 4 experts cannot give 9
        run_op(
            "moe_router", randn(RNG, 2, 12), randn(RNG, 16, 12), top_k=9, n_group=4, topk_group=2
        )


def torch_experts(x, weights, indices, w_up, w_down, w_gate, act):
    xs = T(x).reshape(-1, x.shape[-1])
    ws, ids = T(weights).reshape(len(xs), -1), T(indices).reshape(len(xs), -1)
    out = torch.zeros_like(xs)
    for t in range(len(xs)):
        for slot in range(ids.shape[1]):
            e = int(ids[t, slot])
            up = F.linear(xs[t], T(w_up[e]))
            h = act(F.linear(xs[t], T(w_gate[e]))) * up if w_gate is not None else act(up)
            out[t] += ws[t, slot] * F.linear(h, T(w_down[e]))
    return out.reshape(x.shape)


@pytest.mark.parametrize(
    "gated,act,fn", [(True, "silu", F.silu), (False, "gelu", F.gelu), (False, "relu", F.relu)]
)
def test_experts(gated, act, fn):
    experts, ffn, hidden = 6, 10, 12
    x, router = randn(RNG, 2, 5, hidden), randn(RNG, experts, hidden)
    weights, indices = run_op("moe_router", x, router, top_k=2)
    w_up, w_down = (
        randn(RNG, experts, ffn, hidden, scale=0.3),
        randn(RNG, experts, hidden, ffn, scale=0.3),
    )
    w_gate = randn(RNG, experts, ffn, hidden, scale=0.3) if gated else None
    (y,) = run_op("moe_experts", x, weights, indices, w_up, w_down, w_gate, act=act)
    close(y, torch_experts(x, weights, indices, w_up, w_down, w_gate, fn))


def test_experts_reject_mismatched_stacks():
    x = randn(RNG, 2, 12)
    w, i = np.ones((2, 2), np.float32), np.zeros((2, 2), np.int64)
    with pytest.raises(IRError, match=r"w_down must be \[experts, hidden, ffn\]"):
        run_op("moe_experts", x, w, i, randn(RNG, 4, 10, 12), randn(RNG, 4, 10, 12), act="silu")
