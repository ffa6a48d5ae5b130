"""RTN (round to nearest): min/max scales per group and round, no data needed.

The grid and the rounding are `irgraph.quant`'s (the IR's own definition), so a weight
quantized here dequantizes to exactly what every backend computes. With `mse`, each group's
scale is searched (scale_search.py) instead of min/max.
"""

from __future__ import annotations

import numpy as np

from irgraph.passes.quantize.scale_search import search_scales
from irgraph.quant import QuantSpec, choose_scales, quantize_arrays


def quantize_weight(w: np.ndarray, spec: QuantSpec, mse: bool = False) -> dict[str, np.ndarray]:
    """Suffix -> stored array of float weight `w` [*lead, K], rounded to nearest on min/max
    scales, or on searched ones with `mse`."""
    scales, zeros = (search_scales if mse else choose_scales)(w, spec)
    return quantize_arrays(w, spec, scales, zeros)
