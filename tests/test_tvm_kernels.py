"""The hand-written TVM CPU kernels against numpy at shapes that exercise every tail.

Each kernel is built alone for the host and run at sizes that are not multiples
of its register tiles (rows, key blocks, vector lanes), including a row with no
visible key for the masked softmax.
"""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import te  # noqa: E402
from tvm.target import Target  # noqa: E402

from irgraph.codegen.tvm import attention_kernels  # noqa: E402
from irgraph.codegen.tvm.fast_math import fast_exp  # noqa: E402

HOST = Target.from_device(tvm.cpu())


def build(func):
    return tvm.compile(
        tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=HOST
    )["main"]


def run(func, *arrays, out_shape, out_dtype="float32"):
    out = tvm.runtime.empty(out_shape, out_dtype, tvm.cpu())
    func(*[tvm.runtime.tensor(a) for a in arrays], out)
    return out.numpy()


def test_fast_exp_matches_numpy_and_saturates():
    n = te.var("n", "int64")
    x = te.placeholder((n,), "float32")
    func = build(te.create_prim_func([x, te.compute((n,), lambda i: fast_exp(x[i]))]))
    a = np.concatenate([np.linspace(-87, 87, 20001), [0.0, -1e30, 1e30, -100.0]]).astype(np.float32)
    got = run(func, a, out_shape=a.shape)
    ref = np.exp(a[:-4].astype(np.float64))
    assert np.max(np.abs(got[:-4] - ref) / ref) < 1e-6
    assert got[-4] == 1.0 and got[-3] == 0.0 and got[-1] == 0.0
    assert np.isfinite(got[-2]) and got[-2] > 1e38  # clamped, not inf


@pytest.mark.parametrize("batch, rows, keys", [(2, 37, 45), (1, 3, 200), (1, 8, 16), (1, 5, 0)])
def test_scores_kernel_tails(batch, rows, keys):
    heads, dim, scale = 3, 40, 0.3
    rng = np.random.default_rng(rows + keys)
    q = rng.standard_normal((batch, heads, rows, dim), dtype=np.float32)
    k = rng.standard_normal((batch, heads, keys, dim), dtype=np.float32)
    got = run(
        build(attention_kernels.scores_kernel(heads, dim, scale, "float32")),
        q,
        k,
        out_shape=(batch, heads, rows, keys),
    )
    np.testing.assert_allclose(got, scale * q @ k.transpose(0, 1, 3, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch, rows, keys", [(2, 37, 45), (1, 2, 200), (1, 4, 16)])
def test_masked_softmax_kernel(batch, rows, keys):
    heads = 3
    rng = np.random.default_rng(rows * keys)
    s = (rng.standard_normal((batch, heads, rows, keys)) * 6).astype(np.float32)
    allowed = rng.random((batch, 1, rows, keys)) < 0.7
    allowed[0, 0, 0, :] = False  # a query that sees no key: zeros, as in the op's reference
    allowed[-1, 0, -1, :] = True  # and one that sees every key
    got = run(
        build(attention_kernels.softmax_kernel(heads, "float32")), s, allowed, out_shape=s.shape
    )
    masked = np.where(allowed, s, -np.inf)
    top = masked.max(-1, keepdims=True)
    e = np.where(allowed, np.exp(s - np.where(np.isfinite(top), top, 0)), 0.0)
    total = e.sum(-1, keepdims=True)
    ref = np.where(total > 0, e / np.where(total > 0, total, 1), 0.0)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert not got[0, :, 0].any()


@pytest.mark.parametrize("nb, mt", [(32, 8), (16, 2)])
def test_packed_linear_kernel_tails(nb, mt):
    """Every token count from 1 to 2·mt+3 and a prompt-like 37: full, half and one-row tiles."""
    from irgraph.codegen.tvm.linear import packed_kernel
    from irgraph.runtimes.tvm import pack_weight

    n, k = 11 * nb, 200
    rng = np.random.default_rng(nb)
    w = rng.standard_normal((n, k), dtype=np.float32)
    func = build(packed_kernel(n, k, nb, "float32", "float32", mt))
    packed = pack_weight(w, f"packed{nb}")
    for m in [*range(1, 2 * mt + 4), 37]:
        x = rng.standard_normal((m, k), dtype=np.float32)
        np.testing.assert_allclose(
            run(func, x, packed, out_shape=(m, n)), x @ w.T, rtol=1e-4, atol=1e-4, err_msg=f"M={m}"
        )


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("rotary_dim", [12, 4])
def test_rotary_kernel_matches_reference(interleaved, rotary_dim):
    """The one-kernel rotary vs the op's reference: full, partial (GPT-J style), both pairings."""
    from irgraph.codegen.tvm.lower_attention import _rotate
    from irgraph.ops.rotary import apply_rotary

    b, s, h, d = 2, 5, 3, 12
    rng = np.random.default_rng(rotary_dim)
    x = rng.standard_normal((b, s, h, d), dtype=np.float32)
    cos, sin = (rng.standard_normal((b, s, rotary_dim // 2), dtype=np.float32) for _ in range(2))
    xs = te.placeholder((b, s, h, d), "float32")
    cs, ss = (te.placeholder((b, s, 1, rotary_dim // 2), "float32") for _ in range(2))
    func = build(te.create_prim_func([xs, cs, ss, _rotate(xs, cs, ss, rotary_dim, interleaved)]))
    got = run(func, x, cos[:, :, None], sin[:, :, None], out_shape=x.shape)
    np.testing.assert_allclose(
        got, apply_rotary(x, cos, sin, rotary_dim, interleaved), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("dim", [200, 768, 7])
def test_rms_norm_kernel_matches_reference(dim):
    from irgraph.codegen.tvm.norm_kernels import rms_norm_kernel
    from irgraph.registry import get_op

    rng = np.random.default_rng(dim)
    x = rng.standard_normal((37, dim), dtype=np.float32) * 3
    w = rng.standard_normal(dim, dtype=np.float32)
    got = run(build(rms_norm_kernel(dim, 1e-5)), x, w, out_shape=x.shape)
    ref = get_op("rms_norm").ref(x, w, eps=1e-5, weight_offset=0.0)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_pair", [False, True])
@pytest.mark.parametrize(
    "n, r", [(24, 40), (6, 16), (5, 37)]
)  # 4-, 2- and 1-row blocks; lane tails
def test_grouped_moe_kernel_tiles_tails_and_idle_experts(per_pair, n, r):
    from irgraph.codegen.tvm.moe_kernels import grouped_kernel

    experts, k, tokens = 6, 2, 11
    # expert 0: 11 pairs (two 4-pair tiles + 3 single pairs), expert 1: 4 (one tile),
    # 2-3: a few, 4-5: none
    idx = np.array([[0, 1 if t < 4 else 2 + t % 2] for t in range(tokens)], dtype=np.int64)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((tokens * k if per_pair else tokens, r)).astype(np.float32)
    w = rng.standard_normal((experts, n, r)).astype(np.float32)
    got = run(
        build(grouped_kernel(experts, n, r, k, per_pair, "float32", "float32")),
        idx,
        a,
        w,
        out_shape=(tokens * k, n),
    )
    pairs = idx.reshape(-1)
    want = np.stack([a[p if per_pair else p // k] @ w[pairs[p]].T for p in range(tokens * k)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fast_tanh_and_erf_match_float64():
    import math

    from irgraph.codegen.tvm.fast_math import fast_erf, fast_tanh

    n = te.var("n", "int64")
    x = te.placeholder((n,), "float32")
    a = np.concatenate([np.linspace(-12, 12, 40001), [0.0, -1e30, 1e30, 1e-8]]).astype(np.float32)
    for fn, ref in ((fast_tanh, np.tanh), (fast_erf, np.vectorize(math.erf))):
        func = build(te.create_prim_func([x, te.compute((n,), lambda i: fn(x[i]))]))  # noqa: B023 (built now)
        got = run(func, a, out_shape=a.shape)
        np.testing.assert_allclose(
            got, ref(a.astype(np.float64)), rtol=0, atol=5e-7, err_msg=fn.__name__
        )
