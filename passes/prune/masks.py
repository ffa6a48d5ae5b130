"""Which entries to prune: masks from scores, and OWL's per-layer sparsities.

Scores are "importance" (larger is kept): |W| for magnitude, |W|·‖X_j‖₂ for Wanda (Sun et
al. 2023). Every mask here returns the *kept* entries (bool, the scores' shape) and prunes an
exact count; ties go by position, the earlier entry pruned first (a stable sort), so a mask
never depends on the sort's whims.

- `row_mask`: the int(K·fraction) lowest scores of every row (Wanda's comparison group, and
  magnitude's by default, so the two differ only in the score);
- `flat_mask`: the int(size·fraction) lowest of the whole array (`group=layer`: the published
  magnitude baseline; SparseGPT's per-block mask);
- `nm_mask`: the M - N lowest scores in every group of M consecutive columns of each row;
- `owl_sparsities`: OWL (Yin et al. 2023) gives layers with more outliers (scores above
  m × their layer's mean) less sparsity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def row_mask(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Keep all but the int(K·fraction) lowest-scoring entries of each row of scores [N, K]."""
    n, k = scores.shape
    drop = int(k * fraction)
    keep = np.ones((n, k), bool)
    order = np.argsort(scores, axis=1, kind="stable")[:, :drop]
    np.put_along_axis(keep, order, False, axis=1)
    return keep


def nm_mask(scores: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the N highest scores of every M consecutive columns of each row of scores [R, K]."""
    rows, k = scores.shape
    groups = scores.reshape(rows, k // m, m)
    keep = np.ones(groups.shape, bool)
    order = np.argsort(groups, axis=2, kind="stable")[:, :, : m - n]
    np.put_along_axis(keep, order, False, axis=2)
    return keep.reshape(rows, k)


def flat_mask(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Keep all but the int(size·fraction) lowest scores of the whole array (any shape)."""
    flat = scores.reshape(-1)
    keep = np.ones(flat.shape, bool)
    keep[np.argsort(flat, kind="stable")[: int(flat.size * fraction)]] = False
    return keep.reshape(scores.shape)


def outlier_ratio(scores: Sequence[np.ndarray], m: float) -> float:
    """OWL's layerwise outlier density: the share of all scores above m × their mean."""
    flat = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in scores])
    return float(np.mean(flat > m * flat.mean())) if flat.size else 0.0


def owl_sparsities(ratios: Sequence[float], sparsity: float, lam: float) -> list[float]:
    """Per-layer sparsities from outlier ratios: average `sparsity`, within ±`lam` of it.

    OWL maps the ratios linearly onto a range 2λ wide, shifted to average S, the layer with
    the most outliers the least sparse. The published code scales (max - min) to 2λ, which
    can leave one layer up to 2λ from S when the ratios are lopsided; here the ratio furthest
    from the mean is scaled to λ, so every layer stays in [S - λ, S + λ] and the average is
    still exactly S (the two agree when the ratios are symmetric about their mean).
    """
    r = np.asarray(ratios, np.float64)
    centred = r - r.mean()
    spread = float(np.abs(centred).max(initial=0.0))
    if spread == 0.0:
        return [sparsity] * len(r)
    return [float(sparsity - lam * c / spread) for c in centred]
