"""LLaMA-3 rope scaling back from a `rope_freqs` tensor (LLaMA-3.1, 3.2, 3.3 GGUF files).

llama.cpp's converter (and irgraph's writer) store LLaMA-3's scaling as one divisor per
rotary pair, d_i = plain inverse frequency / scaled one, and no scaling keys. The IR states
the rule's parameters instead (`RopeScaling.LLAMA3`: factor, low/high frequency factors,
original context), so they are solved for here:

    d_i = 1                          wavelength below original / high     (kept)
    d_i = factor                     wavelength above original / low      (slowed by factor)
    1/d_i = (1 - s_i)/factor + s_i   in between, s_i = (original/wavelength_i - low)/(high - low)

factor is the largest divisor; the in-between pairs give s_i, linear in 1/wavelength, whose
slope and intercept fix original/(high - low) and low/(high - low). That leaves one degree of
freedom: low_freq_factor is taken as 1 (every published LLaMA-3 model's), and with a single
in-between pair high_freq_factor as 4 too. Whatever is solved, the divisors are recomputed
from it and must equal the tensor's (float32, relative 1e-5), else the file is refused: a
tensor that follows no such rule is never approximated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from irgraph.errors import ConfigError
from irgraph.ops.rotary import inv_frequencies

LOW_FREQ_FACTOR, HIGH_FREQ_FACTOR = 1.0, 4.0  # LLaMA-3.1's, assumed where not determined
RTOL = 1e-5


def llama3_scaling(
    divisors: np.ndarray, rotary_dim: int, base: float, where: str
) -> dict[str, Any]:
    """RotaryConfig fields (scaling="llama3", factor, ...) whose divisors are `divisors`."""
    d = np.asarray(divisors, dtype=np.float64).reshape(-1)
    if d.size != rotary_dim // 2 or not np.all(np.isfinite(d)) or np.any(d < 1 - RTOL):
        raise ConfigError(
            f"rope_freqs must hold {rotary_dim // 2} divisors >= 1 (one per rotary pair)",
            got=f"{d.size} values, min {float(d.min()) if d.size else 'none'}",
            where=where,
        )
    factor = float(str(np.float32(d.max())))
    plain = inv_frequencies(rotary_dim, base)
    wavelen = 2 * math.pi / plain
    between = (d > 1 + RTOL) & (d < factor * (1 - RTOL))
    low, high = LOW_FREQ_FACTOR, HIGH_FREQ_FACTOR
    if factor <= 1 + RTOL:
        raise ConfigError("rope_freqs divides no frequency (all 1): drop the tensor", where=where)
    s = (1 / d[between] - 1 / factor) / (1 - 1 / factor)
    if between.sum() >= 2:
        slope, intercept = np.polyfit(1 / wavelen[between], s, 1)
        if intercept >= 0:
            raise ConfigError("rope_freqs follows no LLaMA-3 scaling rule", where=where)
        high = float(f"{low - 1 / intercept:.6g}")  # intercept = -low / (high - low)
        original = slope * (high - low)
    elif between.sum() == 1:
        original = float(wavelen[between][0] * (s[0] * (high - low) + low))
    else:
        raise ConfigError(
            "rope_freqs has no pair between its kept and slowed frequencies: the LLaMA-3 "
            "scaling's original context is not determined by it",
            where=where,
        )
    fields = dict(
        scaling="llama3",
        factor=factor,
        original_max_position=int(round(original)),
        low_freq_factor=low,
        high_freq_factor=high,
    )
    scaled = inv_frequencies(rotary_dim, base, **fields)  # type: ignore[arg-type]
    again = (plain / scaled).astype(np.float32)
    if not np.allclose(again, d, rtol=RTOL, atol=0):
        worst = float(np.abs(again / d - 1).max())
        raise ConfigError(
            f"rope_freqs follows no LLaMA-3 scaling rule with low_freq_factor {low:g} (the "
            f"closest, original context {fields['original_max_position']}, high_freq_factor "
            f"{high:g}, factor {factor:g}, is {worst:.1e} off)",
            where=where,
        )
    return fields


__all__ = ["llama3_scaling"]
