"""Rotary embedding against Hugging Face transformers' own RoPE code (fp32, <= 1e-5).

Frequencies and attention factors come from `transformers.modeling_rope_utils.
ROPE_INIT_FUNCTIONS` (the code real checkpoints run); the rotate-half form is
applied with HF's `apply_rotary_pos_emb`, the interleaved form with a torch
complex-number rotation (Meta LLaMA / DeepSeek style).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from irgraph import IRError
from irgraph.ops.rotary import inv_frequencies, rotary_attention_factor
from tests.helpers.op_util import close, randn, run_op

HEAD_DIM = 16
RNG = np.random.default_rng(7)

# (irgraph attrs, HF rope_parameters, HF max_position_embeddings); positions reach 47.
SCALINGS = {
    "none": ({"base": 500.0}, {"rope_type": "default", "rope_theta": 500.0}, 64),
    "linear": (
        {"scaling": "linear", "factor": 2.5},
        {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.5},
        64,
    ),
    # HF's dynamic NTK rescales against config.max_position_embeddings, which is our
    # original_max_position; positions up to 47 outgrow 20, so the base really is rescaled.
    "dynamic_ntk": (
        {"scaling": "dynamic_ntk", "factor": 2.0, "original_max_position": 20},
        {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
        20,
    ),
    "llama3": (
        {
            "scaling": "llama3",
            "factor": 8.0,
            "original_max_position": 64,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "base": 5000.0,
        },
        {
            "rope_type": "llama3",
            "rope_theta": 5000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        512,
    ),
    "yarn": (
        {"scaling": "yarn", "factor": 4.0, "original_max_position": 32},
        {
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 32,
        },
        128,
    ),
    "yarn_mscale": (
        {
            "scaling": "yarn",
            "factor": 40.0,
            "original_max_position": 32,
            "mscale": 1.0,
            "mscale_all_dim": 0.5,
            "beta_fast": 16.0,
            "beta_slow": 2.0,
        },
        {
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 40.0,
            "original_max_position_embeddings": 32,
            "mscale": 1.0,
            "mscale_all_dim": 0.5,
            "beta_fast": 16.0,
            "beta_slow": 2.0,
        },
        1280,
    ),
    # DeepSeek-V2's published values: mscale == mscale_all_dim, so cos/sin stay unscaled.
    "yarn_deepseek": (
        {
            "scaling": "yarn",
            "factor": 40.0,
            "original_max_position": 32,
            "mscale": 0.707,
            "mscale_all_dim": 0.707,
        },
        {
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 40.0,
            "original_max_position_embeddings": 32,
            "mscale": 0.707,
            "mscale_all_dim": 0.707,
        },
        1280,
    ),
    "yarn_attention_factor": (
        {"scaling": "yarn", "factor": 4.0, "original_max_position": 32, "attention_factor": 0.8},
        {
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 32,
            "attention_factor": 0.8,
        },
        128,
    ),
}


def hf_config(rope: dict, max_pos: int, rotary_dim: int) -> transformers.LlamaConfig:
    params = dict(rope)
    if rotary_dim != HEAD_DIM:
        params["partial_rotary_factor"] = rotary_dim / HEAD_DIM
    return transformers.LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        head_dim=HEAD_DIM,
        max_position_embeddings=max_pos,
        rope_parameters=params,
    )


def hf_inv_freq(
    rope: dict, max_pos: int, rotary_dim: int, positions: np.ndarray
) -> tuple[torch.Tensor, float]:
    config = hf_config(rope, max_pos, rotary_dim)
    if (
        rope["rope_type"] == "default"
    ):  # GPT-NeoX's default honours partial_rotary_factor (LLaMA's does not)
        return GPTNeoXRotaryEmbedding.compute_default_rope_parameters(config=config)
    # Dynamic NTK recomputes for the longest sequence seen (max position + 1),
    # as HF's dynamic_rope_update does.
    return ROPE_INIT_FUNCTIONS[rope["rope_type"]](config, None, seq_len=int(positions.max()) + 1)


def irgraph_attrs(attrs: dict, rotary_dim: int, interleaved: bool) -> dict:
    return {
        **attrs,
        "rotary_dim": 0 if rotary_dim == HEAD_DIM else rotary_dim,
        "interleaved": interleaved,
    }


def hf_rotate_half(
    x: np.ndarray, pos: np.ndarray, inv: torch.Tensor, factor: float, rotary_dim: int
) -> torch.Tensor:
    """LLaMA / GPT-NeoX: HF's cos/sin construction and apply_rotary_pos_emb on the rotated slice."""
    xt = torch.from_numpy(x).transpose(1, 2)  # (B, H, S, D)
    freqs = (inv[None, :, None].float() @ torch.from_numpy(pos)[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos() * factor, emb.sin() * factor
    rot, rest = xt[..., :rotary_dim], xt[..., rotary_dim:]
    rotated, _ = apply_rotary_pos_emb(rot, rot, cos, sin)
    return torch.cat([rotated, rest], dim=-1).transpose(1, 2)


def complex_interleaved(
    x: np.ndarray, pos: np.ndarray, inv: torch.Tensor, factor: float, rotary_dim: int
):
    """GPT-J / Meta LLaMA: pairs (2i, 2i+1) as complex numbers times e^{i·pos·θ_i}."""
    xt = torch.from_numpy(x)  # (B, S, H, D)
    angles = torch.from_numpy(pos).float()[..., None] * inv.float()  # (B, S, D/2)
    cis = torch.polar(torch.full_like(angles, factor), angles)[:, :, None, :]
    rot, rest = xt[..., :rotary_dim], xt[..., rotary_dim:]
    pairs = torch.view_as_complex(rot.reshape(*rot.shape[:-1], -1, 2).contiguous())
    rotated = torch.view_as_real(pairs * cis).flatten(-2)
    return torch.cat([rotated, rest], dim=-1)


@pytest.mark.parametrize("interleaved", [False, True], ids=["rotate_half", "interleaved"])
@pytest.mark.parametrize("rotary_dim", [HEAD_DIM, 8], ids=["full", "partial"])
@pytest.mark.parametrize("name", sorted(SCALINGS))
def test_rotary_matches_transformers(name, rotary_dim, interleaved):
    attrs, rope, max_pos = SCALINGS[name]
    x = randn(RNG, 2, 6, 3, HEAD_DIM)
    pos = np.array([[0, 1, 2, 3, 4, 5], [7, 13, 29, 30, 31, 47]], dtype=np.int64)
    inv, factor = hf_inv_freq(rope, max_pos, rotary_dim, pos)
    (y,) = run_op("rotary", x, pos, **irgraph_attrs(attrs, rotary_dim, interleaved))
    reference = complex_interleaved if interleaved else hf_rotate_half
    close(y, reference(x, pos, inv, factor, rotary_dim))


@pytest.mark.parametrize("name", sorted(SCALINGS))
def test_frequencies_and_attention_factor(name):
    attrs, rope, max_pos = SCALINGS[name]
    full = {
        "scaling": "none",
        "factor": 1.0,
        "original_max_position": 0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "base": 10000.0,
        **attrs,
    }
    pos = np.array([[47]])
    inv, factor = hf_inv_freq(rope, max_pos, HEAD_DIM, pos)
    ours = inv_frequencies(
        HEAD_DIM,
        full["base"],
        full["scaling"],
        full["factor"],
        full["original_max_position"],
        full["low_freq_factor"],
        full["high_freq_factor"],
        full["beta_fast"],
        full["beta_slow"],
        max_position=48,
    )
    np.testing.assert_allclose(ours, inv.double().numpy(), rtol=1e-6)
    ours_factor = rotary_attention_factor(
        full["scaling"],
        full["factor"],
        attrs.get("mscale", 1.0),
        attrs.get("mscale_all_dim", 0.0),
        attrs.get("attention_factor"),
    )
    assert ours_factor == pytest.approx(factor, rel=1e-12)


def test_dynamic_ntk_is_plain_rope_within_the_original_context():
    x, pos = randn(RNG, 1, 4, 2, HEAD_DIM), np.arange(4, dtype=np.int64)[None]
    (plain,) = run_op("rotary", x, pos)
    (dynamic,) = run_op(
        "rotary", x, pos, scaling="dynamic_ntk", factor=4.0, original_max_position=8
    )
    close(dynamic, plain, rtol=0, atol=0)


def test_rotary_keeps_norm_and_relative_angle():
    # A rotation: per-pair norms are kept, and <R(p)q, R(p')k> depends on p - p' only.
    q, k = randn(RNG, 1, 1, 1, HEAD_DIM), randn(RNG, 1, 1, 1, HEAD_DIM)
    dots = []
    for shift in (0, 9):
        pos_q, pos_k = np.array([[5 + shift]]), np.array([[2 + shift]])
        (rq,), (rk,) = run_op("rotary", q, pos_q), run_op("rotary", k, pos_k)
        close(np.linalg.norm(rq), np.linalg.norm(q))
        dots.append(float((rq * rk).sum()))
    assert dots[0] == pytest.approx(dots[1], abs=1e-5)


@pytest.mark.parametrize(
    "attrs,message",
    [
        ({"rotary_dim": 5}, "rotary_dim must be even"),
        ({"rotary_dim": 32}, "rotary_dim must be even"),
        ({"scaling": "yarn", "factor": 4.0}, "needs original_max_position"),
        ({"scaling": "ntk"}, "expected none | linear"),
    ],
)
def test_rotary_rejects_bad_attributes(attrs, message):
    with pytest.raises(IRError, match=message):
        run_op("rotary", randn(RNG, 1, 2, 1, HEAD_DIM), np.zeros((1, 2), np.int64), **attrs)
