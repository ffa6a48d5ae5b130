"""Elementwise, tensor and nn op references against independent PyTorch code (fp32, <= 1e-5).

The numpy references in `irgraph/ops` define the IR. One case per op (and per activation)
is checked against torch in tests/test_op_matrix.py; the variants here go further: other
axes, broadcasts, dtypes, optional inputs, and the errors the references raise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irgraph import IRError
from tests.helpers.op_util import close, randn, run_op

RNG = np.random.default_rng(1234)
X = randn(RNG, 2, 5, 16, scale=3.0)
T = torch.from_numpy


def test_gelu_exact_differs_from_tanh():
    # The two forms are different ops; a reference that mixed them up would pass
    # one of the op matrix's gelu cases.
    (exact,) = run_op("gelu", X)
    (approx,) = run_op("gelu", X, approximate="tanh")
    assert np.abs(exact - approx).max() > 1e-4


def test_glu_sigmoid_is_torch_glu():
    # torch's F.glu(a ‖ b) = a·σ(b): the original GLU with `up` first.
    gate, up = randn(RNG, 3, 8), randn(RNG, 3, 8)
    (y,) = run_op("glu", gate, up, act="sigmoid")
    close(y, F.glu(torch.cat([T(up), T(gate)], -1), dim=-1))


# -- tensor ops -----------------------------------------------------------------------------


def test_matmul_broadcasts_batch():
    a, b = randn(RNG, 2, 3, 4, 8), randn(RNG, 3, 8, 5)
    (y,) = run_op("matmul", a, b)
    close(y, T(a) @ T(b))


def test_reshape_zero_copies_and_minus_one_infers():
    (y,) = run_op("reshape", X, shape=[0, 0, 4, -1])
    assert y.shape == (2, 5, 4, 4)
    close(y, T(X).reshape(2, 5, 4, 4))


def test_transpose():
    a = randn(RNG, 2, 3, 4, 5)
    (y,) = run_op("transpose", a, perm=[0, 2, 3, 1])
    close(y, T(a).permute(0, 2, 3, 1))


def test_concat_and_split():
    a, b = randn(RNG, 2, 3, 4), randn(RNG, 2, 3, 6)
    (y,) = run_op("concat", a, b, axis=-1)
    close(y, torch.cat([T(a), T(b)], -1))
    parts = run_op("split", y, axis=2, sizes=[3, 5, 2])
    for got, want in zip(parts, torch.split(T(y), [3, 5, 2], dim=2)):
        close(got, want)


@pytest.mark.parametrize("start,end,step", [(1, 4, 1), (0, 16, 3), (-4, 2**62, 1), (2, -2, 2)])
def test_slice(start, end, step):
    (y,) = run_op("slice", X, axis=2, start=start, end=end, step=step)
    close(y, T(X)[:, :, start:end:step])


def test_gather():
    idx = np.array([[4, 0], [2, 2]], dtype=np.int64)
    (y,) = run_op("gather", X, idx, axis=1)
    close(y, T(X)[:, T(idx)])


def test_where():
    cond = X > 0
    other = randn(RNG, 16)
    (y,) = run_op("where", cond, X, other)
    close(y, torch.where(T(cond), T(X), T(other)))


@pytest.mark.parametrize(
    "dtype,torch_dtype",
    [
        ("f16", torch.float16),
        ("bf16", torch.bfloat16),
        ("i64", torch.int64),
        ("i32", torch.int32),
        ("bool", torch.bool),
    ],
)
def test_cast(dtype, torch_dtype):
    (y,) = run_op("cast", X, dtype=dtype)
    want = T(X).to(torch_dtype)
    np.testing.assert_array_equal(np.asarray(y).astype(np.float32), want.float().numpy())


@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax(axis):
    (y,) = run_op("softmax", X, axis=axis)
    close(y, torch.softmax(T(X), dim=axis))


# -- nn ops ---------------------------------------------------------------------------------


def test_embedding():
    table = randn(RNG, 11, 6)
    ids = RNG.integers(0, 11, (2, 7)).astype(np.int64)
    (y,) = run_op("embedding", ids, table)
    close(y, F.embedding(T(ids), T(table)))


@pytest.mark.parametrize("bad", [-1, 11])
def test_embedding_rejects_out_of_range_ids(bad):
    # np.take would wrap -1 to the last row; F.embedding raises, and so must the reference.
    with pytest.raises(IRError, match=rf"embedding id out of range \(expected 0..10, got {bad}\)"):
        run_op("embedding", np.array([[0, bad]], np.int64), randn(RNG, 11, 6))
    with pytest.raises(IndexError):
        F.embedding(torch.tensor([bad]), T(randn(RNG, 11, 6)))


@pytest.mark.parametrize("with_bias", [False, True])
def test_linear(with_bias):
    w, b = randn(RNG, 24, 16), randn(RNG, 24)
    (y,) = run_op("linear", X, w, b if with_bias else None)
    close(y, F.linear(T(X), T(w), T(b) if with_bias else None))


def test_linear_weight_is_out_by_in():
    with pytest.raises(IRError, match="linear input features"):
        run_op("linear", X, randn(RNG, 16, 24))


@pytest.mark.parametrize("offset", [0.0, 1.0])
@pytest.mark.parametrize("with_bias", [False, True])
def test_layer_norm(offset, with_bias):
    w, b = randn(RNG, 16), randn(RNG, 16)
    (y,) = run_op("layer_norm", X, w, b if with_bias else None, eps=1e-3, weight_offset=offset)
    # weight_offset=1 is Nemotron's layernorm1p: the stored weight is w - 1.
    close(y, F.layer_norm(T(X), (16,), T(w) + offset, T(b) if with_bias else None, eps=1e-3))


@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_rms_norm(offset):
    w = randn(RNG, 16)
    (y,) = run_op("rms_norm", X, w, eps=1e-6, weight_offset=offset)
    # LLaMA's RMSNorm (offset 0) and Gemma's (1 + w), written out as HF writes them.
    x = T(X)
    want = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (T(w) + offset)
    close(y, want)
    close(y, F.rms_norm(T(X), (16,), T(w) + offset, eps=1e-6))


def test_flops_of_absent_required_input_is_a_typed_error():
    # flops() gets None for absent inputs; a missing required one is an IRError, not AttributeError.
    from irgraph.registry import get_op
    from irgraph.types import parse_type

    out = parse_type("f32[2, 3]")
    assert (
        get_op("matmul").flops([parse_type("f32[2, 4]"), parse_type("f32[4, 3]")], [out], {})
        == 2 * 6 * 4
    )
    with pytest.raises(IRError, match="input #0 is absent"):
        get_op("matmul").flops([None, parse_type("f32[4, 3]")], [out], {})


def test_symbolic_dims_that_size_moe_router_and_latent_attention_are_typed_errors():
    # These dims are compared or multiplied with ints in inference: a Sym there was a TypeError.
    from irgraph.registry import get_op
    from irgraph.types import parse_type as t

    with pytest.raises(IRError, match="concrete expert count"):
        get_op("moe_router").infer(
            t("f32[batch, 16]"),
            t("f32[batch, 16]"),
            top_k=2,
            scoring="softmax",
            normalize=True,
            n_group=1,
            topk_group=1,
            scaling=1.0,
        )
    with pytest.raises(IRError, match="concrete heads and head_dim"):
        get_op("latent_attention").infer(
            t("f32[1, 2, 4, seq]"),
            t("f32[1, 2, 8]"),
            t("f32[1, 2, 1, 8]"),
            t("f32[48, 8]"),
            None,
            None,
            nope_dim=8,
            v_dim=4,
            scale=None,
            causal=True,
        )
