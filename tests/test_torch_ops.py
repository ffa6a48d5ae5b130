"""Every op's torch lowering against its numpy reference, one tiny graph per case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import irgraph
from irgraph import CodegenError, GraphBuilder
from irgraph.codegen.torch import LOWERINGS, to_torch, torch_feeds
from irgraph.codegen.torch.lowerings import ACTIVATIONS
from irgraph.registry import OPS, get_op

RNG = np.random.default_rng(0)
F = "f32[2, 3, 8]"


def rand(shape, positive=False):
    a = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(a) + 0.1 if positive else a


# (op, [(input type, array)], attrs)
CASES = [
    *[
        (op, [(F, rand((2, 3, 8), positive=op in ("log", "sqrt", "rsqrt")))], {})
        for op in (
            "neg",
            "exp",
            "log",
            "sqrt",
            "rsqrt",
            "tanh",
            "sin",
            "cos",
            "erf",
            "sigmoid",
            "relu",
            "relu2",
            "silu",
            "fast_gelu",
        )
    ],
    ("gelu", [(F, rand((2, 3, 8)))], {"approximate": "none"}),
    ("gelu", [(F, rand((2, 3, 8)))], {"approximate": "tanh"}),
    ("scale", [(F, rand((2, 3, 8)))], {"factor": 0.37}),
    *[
        (op, [(F, rand((2, 3, 8), positive=op == "pow")), ("f32[8]", rand((8,)))], {})
        for op in ("add", "sub", "mul", "div", "pow", "maximum", "minimum")
    ],
    *[("glu", [(F, rand((2, 3, 8))), (F, rand((2, 3, 8)))], {"act": act}) for act in ACTIVATIONS],
    ("matmul", [(F, rand((2, 3, 8))), ("f32[8, 5]", rand((8, 5)))], {}),
    ("reshape", [(F, rand((2, 3, 8)))], {"shape": [0, 0, 2, 4]}),
    ("reshape", [(F, rand((2, 3, 8)))], {"shape": [-1, 8]}),
    ("transpose", [(F, rand((2, 3, 8)))], {"perm": [2, 0, 1]}),
    ("concat", [(F, rand((2, 3, 8))), ("f32[2, 3, 2]", rand((2, 3, 2)))], {"axis": -1}),
    ("split", [(F, rand((2, 3, 8)))], {"axis": 2, "sizes": [3, 5]}),
    ("slice", [(F, rand((2, 3, 8)))], {"axis": 2, "start": 1, "end": 7, "step": 2}),
    ("slice", [(F, rand((2, 3, 8)))], {"axis": 1, "start": -2}),
    ("gather", [(F, rand((2, 3, 8))), ("i64[4]", np.array([2, 0, 1, 2]))], {"axis": 1}),
    (
        "gather",
        [("f32[5, 4]", rand((5, 4))), ("i64[2, 3]", np.array([[0, 4, 1], [3, 3, 2]]))],
        {"axis": 0},
    ),
    (
        "where",
        [("bool[2, 3, 8]", rand((2, 3, 8)) > 0), (F, rand((2, 3, 8))), ("f32[8]", rand((8,)))],
        {},
    ),
    ("cast", [(F, 5 * rand((2, 3, 8)))], {"dtype": "i64"}),
    ("cast", [(F, rand((2, 3, 8)))], {"dtype": "bf16"}),
    ("softmax", [(F, rand((2, 3, 8)))], {"axis": 1}),
    *[
        (op, [(F, rand((2, 3, 8)))], {"axes": [0, 2], "keepdims": keep})
        for op in ("reduce_sum", "reduce_mean", "reduce_max")
        for keep in (True, False)
    ],
    (
        "embedding",
        [("i64[2, 3]", np.array([[0, 4, 1], [3, 3, 2]])), ("f32[5, 8]", rand((5, 8)))],
        {},
    ),
    ("linear", [(F, rand((2, 3, 8))), ("f32[6, 8]", rand((6, 8))), ("f32[6]", rand((6,)))], {}),
    (
        "linear",
        [(F, rand((2, 3, 8))), ("i8[6, 8]", RNG.integers(-8, 8, (6, 8)).astype(np.int8))],
        {},
    ),
    (
        "layer_norm",
        [(F, rand((2, 3, 8))), ("f32[8]", rand((8,))), ("f32[8]", rand((8,)))],
        {"eps": 1e-3},
    ),
    ("rms_norm", [(F, rand((2, 3, 8))), ("f32[8]", rand((8,)))], {"weight_offset": 1.0}),
    (
        "add_rms_norm",
        [(F, rand((2, 3, 8))), (F, rand((2, 3, 8))), ("f32[8]", rand((8,)))],
        {"eps": 1e-5},
    ),
    *[
        (
            "rotary",
            [
                ("f32[2, 3, 2, 8]", rand((2, 3, 2, 8))),
                ("i64[2, 3]", np.array([[0, 1, 2], [5, 9, 30]])),
            ],
            attrs,
        )
        for attrs in (
            {},
            {"interleaved": True, "rotary_dim": 4},
            {"scaling": "linear", "factor": 2.0},
            {"scaling": "dynamic_ntk", "factor": 2.0, "original_max_position": 8},
            {"scaling": "llama3", "factor": 8.0, "original_max_position": 16},
            {"scaling": "yarn", "factor": 4.0, "original_max_position": 8, "attention_factor": 0.9},
        )
    ],
    ("alibi", [("i64[2, 5]", np.array([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]))], {"num_heads": 6}),
    (
        "relative_position_bias",
        [
            (F, rand((2, 3, 8))),
            ("i64[2, 5]", np.ones((2, 5), np.int64)),
            ("f32[32, 4]", rand((32, 4))),
        ],
        {"bidirectional": True, "max_distance": 16},
    ),
    (
        "moe_router",
        [(F, rand((2, 3, 8))), ("f32[6, 8]", rand((6, 8)))],
        {"top_k": 2, "n_group": 3, "topk_group": 2, "normalize": False},
    ),
]


def case_graph(op, inputs, attrs):
    b = GraphBuilder(f"case-{op}")
    values = [b.input(f"in{i}", t) for i, (t, _) in enumerate(inputs)]
    outs = b.op(op, *values, **attrs)
    for i, v in enumerate(outs if isinstance(outs, tuple) else (outs,)):
        b.output(f"out{i}", v)
    return b.build({}), {f"in{i}": a for i, (_, a) in enumerate(inputs)}


@pytest.mark.parametrize("op,inputs,attrs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_lowering_matches_reference(op, inputs, attrs):
    graph, feeds = case_graph(op, inputs, attrs)
    expected = irgraph.run(graph, feeds)
    got = to_torch(graph)(**torch_feeds(feeds))
    for name, ref in expected.items():
        out = got[name]
        if out.dtype == torch.bfloat16:
            out = out.float()
            ref = ref.astype(np.float32)
        np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-5, atol=1e-5, err_msg=name)


def test_every_registered_op_has_a_torch_lowering():
    get_op("add")  # import the op set
    assert sorted(OPS) == sorted(LOWERINGS)


def test_missing_lowering_names_op_and_target(monkeypatch):
    graph, _ = case_graph("erf", [(F, rand((2, 3, 8)))], {})
    monkeypatch.delitem(LOWERINGS, "erf")
    with pytest.raises(CodegenError, match=r"target torch: no lowering for op 'erf'"):
        to_torch(graph)
