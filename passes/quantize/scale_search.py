"""Per-group scale search (quantize's `mse`): each group's range shrunk to its best factor.

A min/max scale spends the grid's end level on the group's largest |w|; shrinking the range
by a factor p < 1 rounds the rest of the group on a finer step and clamps the few values
beyond it. GPTQ's reference quantizer (IST-DASLab/gptq quant.py, `Quantizer.find_params` with
mse=True, kept by AutoGPTQ and GPTQModel) tries p = 1 - i/100 for i < 80 and keeps, per group,
the p with the lowest Σ|w - q(w)|^2.4. This does the same on irgraph's grid, measuring each
candidate with its scale rounded to the stored dtype. p = 1 (plain min/max) is tried first and
a later p must be strictly better, so no group rounds worse than min/max on that measure.

On the symmetric grid (scale = max|w| / qmax) the peers' step max|w| / ((qmax - qmin) / 2) is
p = 6/7 at 3 bits and 14/15 at 4, both near a candidate (0.86, 0.93): the search picks either
grid, or another, group by group.

`best_shrink` is the loop alone; AWQ's clip search (awq.py) shares it with its own measure
(the error of the group's partial products x·wᵀ).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from irgraph.quant import QuantSpec, choose_scales, grouped, quantize

GRID = 100  # candidates are 1 - i/GRID
MAX_SHRINK = 0.8  # i < MAX_SHRINK·GRID: the range shrinks to 0.21 at most
NORM = 2.4  # the error's exponent, |w - q(w)|^NORM


def best_shrink(
    shape: tuple[int, ...], steps: int, grid: int, error: Callable[[np.float32], np.ndarray]
) -> np.ndarray:
    """Per group (an array of `shape`), the factor p = 1 - i/grid, i < steps, with the lowest
    error(p) [shape]; p = 1 comes first and ties keep the earlier p. float32."""
    best = np.ones(shape, np.float32)
    best_err = np.full(shape, np.inf)
    for i in range(max(1, steps)):
        p = np.float32(1 - i / grid)
        err = error(p)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best = np.where(better, p, best)
    return best


def rounding_error(
    w: np.ndarray, spec: QuantSpec, shrink: np.ndarray | float = 1.0, norm: float = NORM
) -> np.ndarray:
    """Σ |w - q(w)|^norm per group [*lead, blocks] of w [*lead, K], rounded on the grid that
    `choose_scales(w, spec, shrink)` picks (the stored scales, the IR's arithmetic)."""
    scales, zeros = choose_scales(w, spec, shrink)
    *lead, k = w.shape
    nb, g = spec.blocks(k), spec.group_size(k)
    q = quantize(w, spec, scales, zeros)[..., : nb * g].reshape(*lead, nb, g).astype(np.float32)
    s = scales.astype(np.float32)[..., None]
    z = np.float32(0) if zeros is None else zeros.astype(np.float32)[..., None]
    diff = (q - z) * s - grouped(np.asarray(w, np.float32), spec)  # padding: 0 - 0
    return np.asarray(np.sum(np.power(np.abs(diff), np.float32(norm)), axis=-1, dtype=np.float64))


def search_scales(
    w: np.ndarray,
    spec: QuantSpec,
    grid: int = GRID,
    max_shrink: float = MAX_SHRINK,
    norm: float = NORM,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scales and zero points of w [*lead, K] as `choose_scales` returns them, each group's
    range shrunk by the factor with the lowest `rounding_error` (GPTQ's mse search)."""
    w = np.asarray(w, np.float32)
    *lead, k = w.shape
    shrink = best_shrink(
        (*lead, spec.blocks(k)),
        int(max_shrink * grid),
        grid,
        lambda p: rounding_error(w, spec, float(p), norm),  # float(p): exact
    )
    return choose_scales(w, spec, shrink)
