"""Rotary position embedding (Su et al., RoFormer) with the variants checkpoints use.

x is `[batch, seq, heads, head_dim]`; the first `rotary_dim` features rotate
(0 = all: partial rotary as in GPT-NeoX 25%, GPT-J 64 dims, Nemotron 50%), the
rest pass through. Pairs are (i, i + rotary_dim/2) in the rotate-half form
(GPT-NeoX, LLaMA) and (2i, 2i+1) in the interleaved form (GPT-J, PaLM,
DeepSeek-v2). Frequency scalings follow Hugging Face's `modeling_rope_utils`:
linear (position interpolation), dynamic NTK, llama3 and YaRN (with mscale).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import IRError
from irgraph.registry import Attr, Category, OpDef, expect, register
from irgraph.types import TensorType

SCALINGS = ("none", "linear", "dynamic_ntk", "llama3", "yarn")


def inv_frequencies(
    rotary_dim: int,
    base: float,
    scaling: str = "none",
    factor: float = 1.0,
    original_max_position: int = 0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
    max_position: int = 0,
) -> np.ndarray:
    """Inverse frequencies [rotary_dim/2] (float64) for one scaling variant.

    `max_position` (the largest position in the batch + 1) only matters for
    dynamic NTK, which rescales the base once the context outgrows the original.
    """
    exps = np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim
    inv = 1.0 / base**exps
    if scaling == "linear":
        return inv / factor
    if scaling == "dynamic_ntk":
        if max_position > original_max_position:
            scaled = base * ((factor * max_position / original_max_position) - (factor - 1)) ** (
                rotary_dim / (rotary_dim - 2)
            )
            inv = 1.0 / scaled**exps
        return inv
    if scaling == "llama3":
        low_wavelen = original_max_position / low_freq_factor
        high_wavelen = original_max_position / high_freq_factor
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (original_max_position / wavelen - low_freq_factor) / (
            high_freq_factor - low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return np.where(medium, smoothed, scaled)
    if scaling == "yarn":

        def correction_dim(rotations: float) -> float:
            return (
                rotary_dim
                * math.log(original_max_position / (rotations * 2 * math.pi))
                / (2 * math.log(base))
            )

        low: float = max(math.floor(correction_dim(beta_fast)), 0)
        high: float = min(math.ceil(correction_dim(beta_slow)), rotary_dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(rotary_dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        extrapolation = 1 - ramp
        return (inv / factor) * (1 - extrapolation) + inv * extrapolation
    return inv


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature: 0.1·mscale·ln(factor) + 1 (1 when factor ≤ 1)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def rotary_attention_factor(
    scaling: str,
    factor: float,
    mscale: float,
    mscale_all_dim: float,
    attention_factor: float | None,
) -> float:
    """Multiplier on cos/sin: YaRN's mscale ratio; 1 for every other scaling."""
    if scaling != "yarn":
        return 1.0
    if attention_factor is not None:
        return attention_factor
    if mscale and mscale_all_dim:
        return yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
    return yarn_mscale(factor)


@register
class Rotary(OpDef):
    """Rotate query/key features by position-dependent angles."""

    name = "rotary"
    inputs = ("x", "position_ids")
    category = Category.POSITION
    transparent = True  # rotating q or k keeps the projection's role (input 0 only)
    attrs = {
        "rotary_dim": Attr("int", 0, doc="features to rotate; 0 = all of head_dim"),
        "interleaved": Attr("bool", False, doc="pairs (2i, 2i+1) instead of (i, i+d/2)"),
        "base": Attr("float", 10000.0),
        "scaling": Attr("str", "none", choices=SCALINGS),
        "factor": Attr("float", 1.0),
        "original_max_position": Attr("int", 0),
        "low_freq_factor": Attr("float", 1.0),
        "high_freq_factor": Attr("float", 4.0),
        "beta_fast": Attr("float", 32.0),
        "beta_slow": Attr("float", 1.0),
        "mscale": Attr("float", 1.0),
        "mscale_all_dim": Attr("float", 0.0),
        "attention_factor": Attr("float", None, optional=True),
    }

    def infer(self, x: TensorType, position_ids: TensorType, **attrs: Any) -> list[TensorType]:
        expect(x.rank == 4, "rotary input must be [batch, seq, heads, head_dim]", got=x)
        expect(
            position_ids.dtype in (DType.i64, DType.i32),
            "position_ids must be integers",
            got=position_ids.dtype,
        )
        expect(
            position_ids.shape == x.shape[:2],
            "position_ids must be [batch, seq] of x",
            expected=x.shape[:2],
            got=position_ids.shape,
        )
        head_dim = x.shape[3]
        if not isinstance(head_dim, int):
            raise IRError("rotary head_dim must be a number", got=head_dim)
        rd = attrs["rotary_dim"] or head_dim
        expect(
            0 < rd <= head_dim and rd % 2 == 0,
            "rotary_dim must be even and at most head_dim",
            expected=f"<= {head_dim}",
            got=rd,
        )
        scaling = attrs["scaling"]
        if scaling in ("dynamic_ntk", "llama3", "yarn"):
            expect(
                attrs["original_max_position"] > 0,
                f"{scaling} rotary scaling needs original_max_position",
            )
        return [x]

    def ref(self, x: np.ndarray, position_ids: np.ndarray, **attrs: Any) -> list[np.ndarray]:
        cos, sin = cos_sin(position_ids, x.shape[3], **attrs)
        return [
            apply_rotary(
                x.astype(np.float32),
                cos,
                sin,
                attrs["rotary_dim"] or x.shape[3],
                attrs["interleaved"],
            )
        ]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        return 3 * outs[0].numel(env)


def cos_sin(
    position_ids: np.ndarray,
    head_dim: int,
    rotary_dim: int,
    base: float,
    scaling: str,
    factor: float,
    original_max_position: int,
    low_freq_factor: float,
    high_freq_factor: float,
    beta_fast: float,
    beta_slow: float,
    mscale: float,
    mscale_all_dim: float,
    attention_factor: float | None,
    interleaved: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of shape [batch, seq, rotary_dim/2] (float32, scaled by the attention factor)."""
    rd = rotary_dim or head_dim
    inv = inv_frequencies(
        rd,
        base,
        scaling,
        factor,
        original_max_position,
        low_freq_factor,
        high_freq_factor,
        beta_fast,
        beta_slow,
        int(position_ids.max()) + 1 if position_ids.size else 0,
    )
    # Angles in fp32 as the reference implementations compute them (inv_freq and positions in fp32).
    angles = position_ids.astype(np.float32)[..., None] * inv.astype(np.float32)
    scale = np.float32(
        rotary_attention_factor(scaling, factor, mscale, mscale_all_dim, attention_factor)
    )
    return np.cos(angles) * scale, np.sin(angles) * scale


def apply_rotary(
    x: np.ndarray, cos: np.ndarray, sin: np.ndarray, rotary_dim: int, interleaved: bool
) -> np.ndarray:
    """Rotate x [B, S, H, D] with cos/sin [B, S, rotary_dim/2]."""
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    c, s = cos[:, :, None, :], sin[:, :, None, :]  # (B, S, 1, rd/2)
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
        out = np.empty_like(rot)
        out[..., 0::2] = x1 * c - x2 * s
        out[..., 1::2] = x2 * c + x1 * s
    else:
        half = rotary_dim // 2
        x1, x2 = rot[..., :half], rot[..., half:]
        out = np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)
    return np.concatenate([out, rest], axis=-1)
