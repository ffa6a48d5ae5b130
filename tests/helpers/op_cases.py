"""One table of op cases: every registered op at least once, with inputs that respect its ranges.

Each `OpCase` is one node: its inputs (graph inputs, or weights where a backend expects a
parameter: linear and norm weights, tables, expert matrices), its attributes, and where one
exists an independent PyTorch reference. `tests/test_op_matrix.py` runs the table through the
interpreter, the torch reference, and every backend as one-node graphs.

Index inputs are drawn inside their ranges (gather/embedding ids < rows, expert indices < E
and distinct per token, masks with at least one visible key per query), so every backend
computes the same thing as the numpy reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from irgraph import DType, Graph, GraphBuilder

RNG = np.random.default_rng(2024)
X3 = (2, 3, 8)  # [batch, seq, features]


def randn(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def positive(*shape: int) -> np.ndarray:
    return (np.abs(RNG.standard_normal(shape)) + 0.1).astype(np.float32)


@dataclass(frozen=True)
class Param:
    """An input fed as a weight (`@name` in the graph) rather than a graph input."""

    array: np.ndarray


Input = np.ndarray | Param | None  # None: an absent optional input


@dataclass(frozen=True)
class OpCase:
    id: str
    op: str
    inputs: tuple[Input, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    torch_ref: Callable[..., Any] | None = None  # (tensors..., **attrs) -> tensor | tuple

    def arrays(self) -> list[np.ndarray | None]:
        return [i.array if isinstance(i, Param) else i for i in self.inputs]


def _type(a: np.ndarray) -> str:
    return f"{DType.from_numpy(a.dtype)}[{', '.join(map(str, a.shape))}]"


def add_case(b: GraphBuilder, case: OpCase, prefix: str = "") -> tuple[dict, dict, list[str]]:
    """Add `case`'s node to `b` (names prefixed): returns (feeds, weights, output names)."""
    feeds: dict[str, np.ndarray] = {}
    weights: dict[str, np.ndarray] = {}
    values = []
    for i, x in enumerate(case.inputs):
        name = f"{prefix}in{i}"
        if x is None:
            values.append(None)
        elif isinstance(x, Param):
            values.append(b.param(name, _type(x.array)))
            weights[name] = x.array
        else:
            values.append(b.input(name, _type(x)))
            feeds[name] = x
    outs = b.op(case.op, *values, **case.attrs)
    names = []
    for i, v in enumerate(outs if isinstance(outs, tuple) else (outs,)):
        names.append(f"{prefix}out{i}")
        b.output(names[-1], v)
    return feeds, weights, names


def one_node_graph(case: OpCase) -> tuple[Graph, dict[str, np.ndarray]]:
    """`case` as a graph of one node, and its feeds."""
    b = GraphBuilder(f"case-{case.id}")
    feeds, weights, _ = add_case(b, case)
    return b.build(weights), feeds


# -- independent torch references -----------------------------------------------------------

_ACT = {
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "silu": F.silu,
    "relu": F.relu,
    "relu2": lambda t: F.relu(t) ** 2,  # squared ReLU (Primer)
    "fast_gelu": lambda t: t * torch.sigmoid(1.702 * t),  # MindSpore FastGeLU
    "softplus": F.softplus,
}
_UNARY = {
    "neg": torch.neg,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "tanh": torch.tanh,
    "sin": torch.sin,
    "cos": torch.cos,
    "erf": torch.erf,
    "sigmoid": torch.sigmoid,
    "relu": F.relu,
    "relu2": _ACT["relu2"],
    "silu": F.silu,
    "fast_gelu": _ACT["fast_gelu"],
    "softplus": F.softplus,
}
_BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "pow": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
}
_TORCH_DTYPE = {"i64": torch.int64, "bf16": torch.bfloat16, "f16": torch.float16}


def _reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda x, axes, keepdims: fn(x, dim=tuple(axes), keepdim=keepdims)


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float, weight_offset: float) -> Any:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (w + weight_offset)


def _add_rms_norm(x: torch.Tensor, r: torch.Tensor, w: torch.Tensor, eps: float) -> Any:
    total = x + r
    return total, _rms_norm(total, w, eps, 0.0)


# -- the table ------------------------------------------------------------------------------


def _build() -> list[OpCase]:
    cases = [
        OpCase(
            op,
            op,
            (positive(*X3) if op in ("log", "sqrt", "rsqrt") else randn(*X3, scale=2.0),),
            torch_ref=_UNARY[op],
        )
        for op in _UNARY
    ]
    cases += [
        OpCase("gelu", "gelu", (randn(*X3, scale=2.0),), {"approximate": "none"}, F.gelu),
        OpCase(
            "gelu-tanh",
            "gelu",
            (randn(*X3, scale=2.0),),
            {"approximate": "tanh"},
            lambda x, approximate: F.gelu(x, approximate=approximate),
        ),
        OpCase("scale", "scale", (randn(*X3),), {"factor": 0.37}, lambda x, factor: x * factor),
    ]
    cases += [  # the second operand broadcasts over batch and features ([3, 1]) ...
        OpCase(op, op, (randn(*X3), randn(3, 1)), {}, fn)
        for op, fn in _BINARY.items()
        if op != "pow"
    ]
    # ... or over batch and sequence ([8], a bias or an exponent per feature)
    cases.append(OpCase("pow", "pow", (positive(*X3), randn(8)), {}, torch.pow))
    cases += [
        OpCase(
            f"glu-{act}",
            "glu",
            (randn(*X3, scale=2.0), randn(*X3)),
            {"act": act},
            lambda g, u, act: _ACT[act](g) * u,
        )
        for act in _ACT
    ]
    cases += [
        OpCase("matmul", "matmul", (randn(*X3), randn(8, 5)), {}, torch.matmul),
        OpCase(
            "reshape-split-heads",
            "reshape",
            (randn(*X3),),
            {"shape": [0, 0, 2, 4]},
            lambda x, shape: x.reshape(2, 3, 2, 4),
        ),
        OpCase(
            "reshape-infer",
            "reshape",
            (randn(*X3),),
            {"shape": [-1, 8]},
            lambda x, shape: x.reshape(shape),
        ),
        OpCase(
            "transpose",
            "transpose",
            (randn(2, 3, 2, 4),),
            {"perm": [0, 2, 1, 3]},
            lambda x, perm: x.permute(*perm),
        ),
        OpCase(
            "concat",
            "concat",
            (randn(*X3), randn(2, 3, 2)),
            {"axis": -1},
            lambda *xs, axis: torch.cat(xs, axis),
        ),
        OpCase(
            "split",
            "split",
            (randn(*X3),),
            {"axis": 2, "sizes": [3, 5]},
            lambda x, axis, sizes: torch.split(x, sizes, axis),
        ),
        OpCase(
            "slice-step",
            "slice",
            (randn(*X3),),
            {"axis": 2, "start": 1, "end": 7, "step": 2},
            lambda x, axis, start, end, step: x[:, :, start:end:step],
        ),
        OpCase(
            "slice-last",
            "slice",
            (randn(*X3),),
            {"axis": 1, "start": -1},
            lambda x, axis, start: x[:, start:],
        ),
        OpCase(
            "gather-axis1",
            "gather",
            (randn(*X3), np.array([2, 0, 1, 2])),
            {"axis": 1},
            lambda x, i, axis: x[:, i],
        ),
        OpCase(
            "gather-negative",  # negative indices count from the end, as np.take
            "gather",
            (Param(randn(5, 4)), np.array([[0, -1, 1], [3, -5, 2]])),
            {"axis": 0},
            lambda x, i, axis: x[i],
        ),
        OpCase(
            "where",
            "where",
            (randn(*X3) > 0, randn(*X3), randn(8)),
            {},
            torch.where,
        ),
        OpCase(
            "cast-i64",
            "cast",
            (5 * randn(*X3),),
            {"dtype": "i64"},
            lambda x, dtype: x.to(_TORCH_DTYPE[dtype]),
        ),
        OpCase(
            "cast-bf16",
            "cast",
            (randn(*X3),),
            {"dtype": "bf16"},
            lambda x, dtype: x.to(_TORCH_DTYPE[dtype]),
        ),
        OpCase(
            "softmax",
            "softmax",
            (randn(*X3, scale=3.0),),
            {"axis": 1},
            lambda x, axis: torch.softmax(x, axis),
        ),
    ]
    reductions = {
        "reduce_sum": torch.sum,
        "reduce_mean": torch.mean,
        "reduce_max": torch.amax,
    }
    cases += [
        OpCase(
            f"{op}-keep{int(keep)}",
            op,
            (randn(*X3),),
            {"axes": [0, 2], "keepdims": keep},
            _reduce(fn),
        )
        for op, fn in reductions.items()
        for keep in (True, False)
    ]
    cases += [
        OpCase(
            "embedding",
            "embedding",
            (RNG.integers(0, 5, (2, 3)), Param(randn(5, 8))),
            {},
            F.embedding,
        ),
        OpCase(
            "linear-bias",
            "linear",
            (randn(*X3), Param(randn(6, 8)), Param(randn(6))),
            {},
            F.linear,
        ),
        OpCase("linear", "linear", (randn(*X3), Param(randn(40, 8))), {}, F.linear),
        OpCase(
            "layer_norm",
            "layer_norm",
            (randn(*X3), Param(randn(8)), Param(randn(8))),
            {"eps": 1e-3},
            lambda x, w, b, eps: F.layer_norm(x, (8,), w, b, eps=eps),
        ),
        OpCase(
            "layer_norm-1p",  # Nemotron's layernorm1p: the stored weight is w - 1
            "layer_norm",
            (randn(*X3), Param(randn(8)), None),
            {"weight_offset": 1.0},
            lambda x, w, b, weight_offset: F.layer_norm(x, (8,), w + weight_offset, eps=1e-5),
        ),
        OpCase(
            "rms_norm",
            "rms_norm",
            (randn(*X3), Param(randn(8))),
            {"eps": 1e-6, "weight_offset": 1.0},
            _rms_norm,
        ),
        OpCase(
            "add_rms_norm",
            "add_rms_norm",
            (randn(*X3), randn(*X3), Param(randn(8))),
            {"eps": 1e-5},
            _add_rms_norm,
        ),
    ]
    positions = np.array([[0, 1, 2], [5, 9, 30]])
    rotary = {
        "default": {},
        "interleaved-partial": {"interleaved": True, "rotary_dim": 4},
        "linear": {"scaling": "linear", "factor": 2.0},
        "dynamic_ntk": {"scaling": "dynamic_ntk", "factor": 2.0, "original_max_position": 8},
        "llama3": {"scaling": "llama3", "factor": 8.0, "original_max_position": 16},
        "yarn": {
            "scaling": "yarn",
            "factor": 4.0,
            "original_max_position": 8,
            "attention_factor": 0.9,
        },
    }
    cases += [
        OpCase(f"rotary-{name}", "rotary", (randn(2, 3, 2, 8), positions), attrs)
        for name, attrs in rotary.items()
    ]
    mask = np.array([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])  # row 1 left-padded by two
    cases += [
        OpCase("alibi", "alibi", (mask,), {"num_heads": 6}),
        OpCase(
            "relative_position_bias",
            "relative_position_bias",
            (randn(*X3), np.ones((2, 5), np.int64), Param(randn(32, 4))),
            {"bidirectional": True, "max_distance": 16},
        ),
        OpCase(  # Transformer-XL position term: 3 queries after 2 cached keys, 4 heads of 8
            "xl_relative_bias",
            "xl_relative_bias",
            (randn(2, 3, 4, 8), np.ones((2, 5), np.int64), Param(randn(32, 16, scale=0.3))),
            {"scale": 0.35},
        ),
        OpCase(  # prefill: no cache, causal, grouped query heads (4 q, 2 kv)
            "attention-gqa",
            "attention",
            (randn(2, 3, 4, 8), randn(2, 3, 2, 8), randn(2, 3, 2, 8)),
        ),
        OpCase(  # decode step over a 2-token cache, padded mask, bias, window and softcap
            "attention-cache",
            "attention",
            (
                randn(2, 3, 4, 8),
                randn(2, 3, 2, 8),
                randn(2, 3, 2, 8),
                randn(2, 2, 2, 8),
                randn(2, 2, 2, 8),
                mask,
                randn(2, 4, 3, 5),
                None,
            ),
            {"window": 3, "softcap": 2.0},
        ),
        OpCase(  # strided (Child et al. 2019) decode step over a 2-token cache, padded mask
            "attention-strided",
            "attention",
            (
                randn(2, 3, 4, 8),
                randn(2, 3, 2, 8),
                randn(2, 3, 2, 8),
                randn(2, 2, 2, 8),
                randn(2, 2, 2, 8),
                mask,
                None,
                None,
            ),
            {"stride": 2},
        ),
        OpCase(  # bidirectional over the new tokens (an encoder)
            "attention-bidirectional",
            "attention",
            (randn(2, 3, 2, 8), randn(2, 3, 2, 8), randn(2, 3, 2, 8)),
            {"causal": False, "scale": 0.5},
        ),
        OpCase(  # DeepSeek-v2 latent attention, 2 heads, nope 4 + rope 4, rank 8, v_dim 4
            "latent_attention",
            "latent_attention",
            (
                randn(2, 3, 2, 8),
                randn(2, 3, 8),
                randn(2, 3, 1, 4),
                Param(randn(16, 8, scale=0.3)),
                randn(2, 2, 12),
                mask,
            ),
            {"nope_dim": 4, "v_dim": 4},
        ),
        OpCase(
            "moe_router-grouped",
            "moe_router",
            (randn(*X3), Param(randn(6, 8))),
            {"top_k": 2, "n_group": 3, "topk_group": 2, "normalize": False},
        ),
        OpCase(
            "moe_router-sigmoid",
            "moe_router",
            (randn(*X3), Param(randn(4, 8))),
            {"top_k": 2, "scoring": "sigmoid", "scaling": 1.5},
        ),
    ]
    table = np.stack([d * 3 + RNG.integers(0, 3, 10) for d in range(2)]).astype(np.int64)
    cases.append(
        OpCase(  # PanGu-Σ's random routed experts: 2 domains x 3 experts, vocabulary 10
            "moe_fixed_router",
            "moe_fixed_router",
            (RNG.integers(0, 10, (2, 3)), np.array([1, 0], np.int64), Param(table)),
            torch_ref=lambda ids, domain, table: (
                torch.ones((*ids.shape, 1)),
                table[domain[:, None], ids].unsqueeze(-1),
            ),
        )
    )
    experts = np.stack([RNG.permutation(4)[:2] for _ in range(6)]).reshape(2, 3, 2)
    routing = positive(2, 3, 2)
    for act, gated in (("silu", True), ("gelu", False)):
        gate = (Param(randn(4, 6, 8, scale=0.3)),) if gated else ()
        cases.append(
            OpCase(
                f"moe_experts-{act}{'-gated' if gated else ''}",
                "moe_experts",
                (
                    randn(*X3),
                    routing,
                    experts,
                    Param(randn(4, 6, 8, scale=0.3)),
                    Param(randn(4, 8, 6, scale=0.3)),
                    *gate,
                ),
                {"act": act},
            )
        )
    kv = randn(2, 3, 2, 8)
    kv[0, 1] = 0.0  # an all-zero group: scale FLOOR, zeros back
    channel_scale = (positive(1, 2, 1, 8) / 60).astype(np.float32)
    for gran, dtype, scale in (
        ("per-head", "i8", None),
        ("per-token", "i8", None),
        ("per-channel", "i8", Param(channel_scale)),
        ("per-head", "f8e4m3", None),
    ):
        cases.append(
            OpCase(
                f"kv_quantize-{gran}-{dtype}",
                "kv_quantize",
                (kv, scale),
                {"dtype": dtype, "granularity": gran},
            )
        )
    # ring_attention: W=4 slots, 2 of 4 query heads' KV heads; past 5 (the ring has wrapped,
    # one row left-padded), past 2 (half the slots empty) and a 6-token prefill (longer than W)
    for past, seq in ((5, 3), (2, 1), (0, 6)):
        mask = np.ones((2, past + seq), np.int64)
        mask[1, : min(2, past + seq - 1)] = 0
        cases.append(
            OpCase(
                f"ring_attention-past{past}-seq{seq}",
                "ring_attention",
                (
                    randn(2, seq, 4, 8),
                    randn(2, seq, 2, 8),
                    randn(2, seq, 2, 8),
                    randn(2, 2, 4, 8),
                    randn(2, 2, 4, 8),
                    mask,
                ),
                {"window": 4, "softcap": 0.0 if past else 5.0},
            )
        )
    # paged_attention: a pool of 7 pages of 4 tokens, rows of 5 and 2 cached tokens on
    # scattered pages (row 0 crosses a page boundary), 2 new tokens each; and a prefill
    for lens, seq, table in (([5, 2], 2, [[3, 0, 6], [5, 1, 1]]), ([0, 0], 3, [[2], [4]])):
        cases.append(
            OpCase(
                f"paged_attention-seq{seq}",
                "paged_attention",
                (
                    randn(2, seq, 4, 8),
                    randn(2, seq, 2, 8),
                    randn(2, seq, 2, 8),
                    randn(7, 4, 2, 8),
                    randn(7, 4, 2, 8),
                    np.asarray(table, np.int64),
                    np.asarray(lens, np.int64),
                ),
                {"softcap": 0.0 if seq == 2 else 5.0},
            )
        )
    return cases


CASES: list[OpCase] = _build()
