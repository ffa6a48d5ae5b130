"""Mixture-of-experts: a top-k router and the routed expert MLPs.

The router scores each token against every expert, keeps the best k
(optionally within the best `topk_group` of `n_group` expert groups, as
DeepSeek-v2 does), optionally renormalises the kept weights (Mixtral) and
scales them. Experts are stacked: `w_up`/`w_gate` `[experts, ffn, hidden]`,
`w_down` `[experts, hidden, ffn]`; shared experts (DeepSeek) are ordinary MLPs
in the graph, added to the routed output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.activations import ACTIVATIONS, sigmoid
from irgraph.dtypes import DType
from irgraph.errors import IRError
from irgraph.ops.tensor import softmax_np
from irgraph.registry import Attr, Category, Dropout, IndexBound, OpDef, expect, given, register
from irgraph.types import TensorType


@register
class MoeRouter(OpDef):
    """(weights f32 [..., k], expert indices i64 [..., k]) for each token of x [..., hidden]."""

    name = "moe_router"
    inputs = ("x", "weight")
    category = Category.ROUTER
    weights = ("weight",)
    outputs = ("weights", "indices")
    attrs = {
        "top_k": Attr("int"),
        "scoring": Attr("str", "softmax", choices=("softmax", "sigmoid")),
        "normalize": Attr(
            "bool",
            True,
            doc="renormalise the kept k weights to sum to 1 (Mixtral's "
            "norm_topk_prob); off keeps the raw probabilities (Switch, DeepSeek-v2)",
        ),
        "n_group": Attr("int", 1),
        "topk_group": Attr("int", 1),
        "scaling": Attr("float", 1.0, doc="routed_scaling_factor"),
    }

    def infer(
        self,
        x: TensorType,
        weight: TensorType,
        top_k: int,
        scoring: str,
        normalize: bool,
        n_group: int,
        topk_group: int,
        scaling: float,
    ) -> list[TensorType]:
        expect(
            weight.rank == 2 and weight.shape[1] == x.shape[-1],
            "router weight must be [experts, hidden]",
            expected=f"[experts, {x.shape[-1]}]",
            got=weight,
        )
        experts = weight.shape[0]
        if not isinstance(experts, int):  # a symbolic count cannot be compared with top_k
            raise IRError(
                "router weight must have a concrete expert count", expected="an int", got=weight
            )
        expect(
            0 < top_k <= experts, "top_k must be in 1..experts", expected=f"1..{experts}", got=top_k
        )
        expect(
            experts % n_group == 0 and 0 < topk_group <= n_group,
            "experts must split into n_group groups",
            expected=f"n_group dividing {experts}",
            got=(n_group, topk_group),
        )
        kept = topk_group * (experts // n_group)  # experts in the kept groups
        expect(
            top_k <= kept,
            "top_k must fit in the experts of the topk_group kept groups",
            expected=f"top_k <= {kept}",
            got=top_k,
        )
        shape = (*x.shape[:-1], top_k)
        return [TensorType(DType.f32, shape), TensorType(DType.i64, shape)]

    def ref(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        top_k: int,
        scoring: str,
        normalize: bool,
        n_group: int,
        topk_group: int,
        scaling: float,
    ) -> list[np.ndarray]:
        logits = x.astype(np.float32) @ weight.astype(np.float32).T  # (..., E)
        scores = softmax_np(logits, -1) if scoring == "softmax" else sigmoid(logits)
        choose = scores
        if n_group > 1:
            grouped = scores.reshape(*scores.shape[:-1], n_group, -1)  # (..., G, E/G)
            group_score = grouped.max(-1)
            keep = np.argsort(-group_score, axis=-1, kind="stable")[..., :topk_group]
            group_mask = np.zeros_like(group_score, dtype=bool)
            np.put_along_axis(group_mask, keep, True, axis=-1)
            choose = np.where(np.repeat(group_mask, grouped.shape[-1], axis=-1), scores, -np.inf)
        indices = np.argsort(-choose, axis=-1, kind="stable")[..., :top_k]
        weights = np.take_along_axis(scores, indices, axis=-1)
        if normalize:
            weights = weights / weights.sum(-1, keepdims=True)
        return [(weights * np.float32(scaling)).astype(np.float32), indices.astype(np.int64)]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        tokens = outs[0].numel(env) // attrs["top_k"]
        return 2 * tokens * given(ins, 1).numel(env)


@register
class MoeFixedRouter(OpDef):
    """PanGu-Σ's Random Routed Experts: each token goes to expert table[domain, token id], weight 1.

    No learned gate: the table [domains, vocab] is a fixed random map made when the model is
    (each domain's row picks among that domain's own experts), and the domain id of each row
    [batch] is a graph input (`domain_ids`). Output as moe_router's with k = 1."""

    name = "moe_fixed_router"
    no_arithmetic = True
    inputs = ("ids", "domain", "table")
    category = Category.ROUTER
    outputs = ("weights", "indices")
    indices = {"domain": IndexBound("table", 0), "ids": IndexBound("table", 1)}

    def infer(self, ids: TensorType, domain: TensorType, table: TensorType) -> list[TensorType]:
        for what, t, rank in (("ids", ids, 2), ("domain", domain, 1), ("table", table, 2)):
            expect(
                t.dtype == DType.i64 and t.rank == rank,
                f"moe_fixed_router {what} must be i64 of rank {rank}",
                expected=f"i64, rank {rank}",
                got=t,
            )
        shape = (*ids.shape, 1)
        return [TensorType(DType.f32, shape), TensorType(DType.i64, shape)]

    def ref(self, ids: np.ndarray, domain: np.ndarray, table: np.ndarray) -> list[np.ndarray]:
        experts = np.asarray(table)[np.asarray(domain)[:, None], np.asarray(ids)]
        return [np.ones((*experts.shape, 1), np.float32), experts[..., None].astype(np.int64)]


@register
class MoeExperts(OpDef):
    """Σ_k weights[k] · expert_{indices[k]}(x): gated act(x·W_gᵀ)·(x·W_uᵀ) or plain act(x·W_uᵀ)."""

    name = "moe_experts"
    inputs = ("x", "weights", "indices", "w_up", "w_down", "w_gate?")
    attrs = {"act": Attr("str", choices=tuple(ACTIVATIONS))}
    category = Category.ROUTED
    weights = ("w_up", "w_down", "w_gate")
    stored_dtype = ("w_up", "w_down", "w_gate")  # converted per expert inside the kernel
    routed = ("w_up", "w_down", "w_gate")
    indices = {"indices": IndexBound("w_up")}  # expert ids < experts
    dropout = Dropout.RESIDUAL

    def active_fraction(self, types: Sequence[TensorType | None], **attrs: Any) -> float | None:
        """top_k / experts: each token runs k of the stacked experts."""
        k = given(types, 1).shape[-1]
        experts = given(types, 3).shape[0]
        if not (isinstance(k, int) and isinstance(experts, int)):
            return None  # top-k and the expert count are static in every MoE the builders make
        return k / experts

    def infer(
        self,
        x: TensorType,
        weights: TensorType,
        indices: TensorType,
        w_up: TensorType,
        w_down: TensorType,
        w_gate: TensorType | None,
        act: str,
    ) -> list[TensorType]:
        expect(
            w_up.rank == 3 and w_up.shape[2] == x.shape[-1],
            "w_up must be [experts, ffn, hidden]",
            expected=f"[experts, ffn, {x.shape[-1]}]",
            got=w_up,
        )
        e, f, h = w_up.shape
        expect(
            w_down.shape == (e, h, f),
            "w_down must be [experts, hidden, ffn]",
            expected=(e, h, f),
            got=w_down.shape,
        )
        if w_gate is not None:
            expect(
                w_gate.shape == w_up.shape,
                "w_gate must match w_up",
                expected=w_up.shape,
                got=w_gate.shape,
            )
        expect(
            weights.shape == indices.shape and weights.shape[:-1] == x.shape[:-1],
            "router weights/indices must be [..tokens, k]",
            expected=f"[{x.shape[:-1]}, k]",
            got=(weights, indices),
        )
        return [x]

    def ref(
        self,
        x: np.ndarray,
        weights: np.ndarray,
        indices: np.ndarray,
        w_up: np.ndarray,
        w_down: np.ndarray,
        w_gate: np.ndarray | None,
        act: str,
    ) -> list[np.ndarray]:
        shape = x.shape
        xs = x.reshape(-1, shape[-1]).astype(np.float32)
        ws = weights.reshape(len(xs), -1)
        ids = indices.reshape(len(xs), -1)
        out = np.zeros_like(xs)
        fn = ACTIVATIONS[act].fn
        for e in np.unique(ids):
            tok, slot = np.nonzero(ids == e)
            h = xs[tok] @ w_up[e].astype(np.float32).T
            h = fn(xs[tok] @ w_gate[e].astype(np.float32).T) * h if w_gate is not None else fn(h)
            out[tok] += (h @ w_down[e].astype(np.float32).T) * ws[tok, slot][:, None]
        return [out.reshape(shape)]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        tokens = outs[0].numel(env) // int(given(ins, 0).concrete(env)[-1])
        k = int(given(ins, 1).concrete(env)[-1])
        _, f, h = given(ins, 3).concrete(env)
        mats = 3 if ins[5] is not None else 2
        return 2 * tokens * k * mats * f * h
