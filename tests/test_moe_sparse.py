"""The torch training path's sparse MoE dispatch: values vs the numpy reference, grads vs dense."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from irgraph.codegen.torch.lowerings import ACTIVATIONS as TORCH_ACTS
from irgraph.codegen.torch.lowerings import TorchContext
from irgraph.codegen.torch.moe import _moe_experts, dense_experts, sparse_experts
from irgraph.registry import get_op

E, K, H, FF = 8, 2, 16, 24


def problem(tokens: int, gated: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, H)).astype(np.float32)
    logits = rng.standard_normal((tokens, E))
    idx = np.argsort(-logits, axis=-1)[:, :K].astype(np.int64)
    w = rng.uniform(0.1, 1.0, (tokens, K)).astype(np.float32)
    mats = [
        rng.standard_normal(s).astype(np.float32) * 0.3
        for s in ((E, FF, H), (E, H, FF), (E, FF, H))
    ]
    return x, w, idx, mats[0], mats[1], mats[2] if gated else None


@pytest.mark.parametrize("act", ["silu", "gelu", "relu"])
@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("tokens", [1, 3, 37])  # 1 and 3 leave most experts without tokens
def test_sparse_matches_reference(tokens, gated, act):
    x, w, idx, up, down, gate = problem(tokens, gated)
    want = get_op("moe_experts").ref(x, w, idx, up, down, gate, act=act)[0]
    t = [None if a is None else torch.from_numpy(a) for a in (x, w, idx, up, down, gate)]
    got = sparse_experts(*t, TORCH_ACTS[act]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    dense = dense_experts(*t, TORCH_ACTS[act]).numpy()
    np.testing.assert_allclose(dense, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gated", [True, False])
def test_sparse_gradients_match_dense(gated):
    x, w, idx, up, down, gate = problem(29, gated, seed=1)
    grads = []
    for run in (sparse_experts, dense_experts):
        leaves = [
            torch.tensor(a, requires_grad=True)
            for a in (x, w, up, down) + ((gate,) if gated else ())
        ]
        xs, ws, u, d, *g = leaves
        out = run(xs, ws, torch.from_numpy(idx), u, d, g[0] if g else None, TORCH_ACTS["silu"])
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        grads.append([leaf.grad.numpy() for leaf in leaves])
    for sparse, dense in zip(*grads):
        assert np.abs(dense).max() > 0
        np.testing.assert_allclose(sparse, dense, atol=1e-5, rtol=1e-5)


def test_sparse_only_touches_routed_experts():
    """An expert no token routes to gets no gradient (never run), unlike a dense zero-weight run."""
    x, w, idx, up, down, gate = problem(4, True)
    idx[:] = np.array([0, 3])  # every token -> experts 0 and 3
    u = torch.tensor(up, requires_grad=True)
    sparse_experts(
        torch.from_numpy(x),
        torch.from_numpy(w),
        torch.from_numpy(idx),
        u,
        torch.from_numpy(down),
        torch.from_numpy(gate),
        TORCH_ACTS["silu"],
    ).sum().backward()
    touched = np.abs(u.grad.numpy()).reshape(E, -1).max(axis=1) > 0
    assert touched.tolist() == [e in (0, 3) for e in range(E)]


def test_bf16_autocast_runs_close_to_fp32():
    x, w, idx, up, down, gate = problem(33, True)
    t = [torch.from_numpy(a) for a in (x, w, idx, up, down, gate)]
    want = sparse_experts(*t, TORCH_ACTS["silu"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = sparse_experts(*t, TORCH_ACTS["silu"])
    assert got.dtype == torch.bfloat16
    np.testing.assert_allclose(
        got.float().numpy(), want.numpy(), atol=0.05 * want.abs().max().item()
    )


def test_export_traces_the_dense_form():
    """torch.export cannot trace per-expert token counts: the lowering uses the dense form there."""
    x, w, idx, up, down, gate = problem(5, True)
    params = [torch.from_numpy(a) for a in (up, down, gate)]

    class Layer(torch.nn.Module):
        def forward(self, x, w, idx):
            node = SimpleNamespace(op="moe_experts", attrs={"act": "silu"})
            return _moe_experts(TorchContext(), node, x, w, idx, *params)[0]

    args = (torch.from_numpy(x)[None], torch.from_numpy(w)[None], torch.from_numpy(idx)[None])
    exported = torch.export.export(Layer(), args)
    ops = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert any("bmm" in op for op in ops) and not any("bincount" in op for op in ops), ops
    want = get_op("moe_experts").ref(x, w, idx, up, down, gate, act="silu")[0]
    np.testing.assert_allclose(exported.module()(*args)[0].numpy(), want, atol=1e-5, rtol=1e-5)
