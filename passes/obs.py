"""Optimal Brain Surgeon machinery shared by GPTQ (quantize) and SparseGPT (prune).

For a linear y = x·Wᵀ with calibration inputs X, H = 2·XᵀX / rows (calibrate.py) is the
Hessian of the layer's squared output error. Both methods walk the input columns in order,
replace column j by its rounded (GPTQ) or masked (SparseGPT) value, and move the error,
scaled by the inverse Hessian, onto the columns not yet done, using the upper Cholesky factor
U of H⁻¹ (Frantar et al.); updates are lazy in blocks of columns. What they share:

- `dead_inputs`: an input that is always 0 (H[j, j] = 0) gets H[j, j] = 1 and a zero column;
- `inverse_factor`: damping adds damp·mean(diag H) to the diagonal; when the Cholesky
  factorisation still fails the damping is raised tenfold (up to MAX_DAMP) and the caller
  reports the weight, instead of failing.
"""

from __future__ import annotations

import numpy as np

from irgraph.errors import PassError

MAX_DAMP = 10.0  # the last damping tried, as a fraction of mean(diag H)


def dead_inputs(w: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 copies of w [N, K] and h [K, K] with dead inputs' columns zeroed, H[j, j] = 1."""
    w = np.array(w, np.float64)
    h = np.array(h, np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    return w, h


def inverse_factor(h: np.ndarray, damp: float, name: str, what: str) -> tuple[np.ndarray, float]:
    """(U, damp): upper Cholesky factor of (H + damp·mean(diag H)·I)⁻¹, raising damp tenfold
    until both factorisations succeed; `what` ("quantize(method=gptq)") names the pass."""
    mean = float(np.mean(np.diag(h)))
    tried = []
    d = damp
    while True:
        tried.append(d)
        try:
            lower = np.linalg.cholesky(h + d * mean * np.eye(len(h)))
            inv = np.linalg.inv(lower)
            u = np.linalg.cholesky(inv.T @ inv).T
            if np.all(np.isfinite(u)):
                return u, d
        except np.linalg.LinAlgError:
            pass
        if d >= MAX_DAMP:
            raise PassError(
                f"{what}: the Hessian of @{name} is not positive definite even with damping",
                expected="calibration data that exercises the layer's inputs",
                got=f"Cholesky failed at damp={', '.join(map(str, tried))}",
            )
        d = min(max(d * 10, 0.01), MAX_DAMP)
