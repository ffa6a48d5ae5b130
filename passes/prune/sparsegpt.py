"""SparseGPT (Frantar & Alistarh 2023): prune one column at a time, moving each error onto the
columns not yet pruned, as GPTQ does with rounding errors (passes/obs.py is their shared OBS
machinery: dead inputs, damping, the upper Cholesky factor U of H⁻¹).

Column j of W [N, K] is masked (its pruned entries set to 0); the error, divided by U[j, j],
is subtracted along row j of U from the later columns of the block, and the block's errors
from every later block at once (lazy updates, `block` columns at a time). The mask is chosen
as the reference implementation (IST-DASLab/sparsegpt) does:

- unstructured: at the start of each block, the int(size·fraction) entries of the block with
  the lowest w²/U[j, j]² (the OBS saliency with the current, already updated weights),
  compared across the whole block ("adaptive mask selection": rows get different counts);
- N:M: at the start of each group of M columns, the M - N lowest of each row's group.

With H = I every saliency is w² and no error moves: the result is exactly the magnitude mask
(within each block).
"""

from __future__ import annotations

import numpy as np

from irgraph.passes import obs
from irgraph.passes.prune.masks import flat_mask, nm_mask


def prune_weight(
    w: np.ndarray,
    h: np.ndarray,
    fraction: float,
    nm: tuple[int, int] | None,
    damp: float = 0.01,
    block: int = 128,
    name: str = "weight",
) -> tuple[np.ndarray, float]:
    """(pruned w [N, K] in w's dtype, damping used) for Hessian h [K, K] (float64).

    `nm` = (N, M) prunes to the N:M pattern (K a multiple of M); otherwise `fraction` of
    each block's entries. `block` is rounded up to a multiple of M so groups never straddle.
    """
    dtype = np.asarray(w).dtype
    w, h = obs.dead_inputs(w, h)
    k = w.shape[1]
    hinv, damp = obs.inverse_factor(h, damp, name, "prune(method=sparsegpt)")
    if nm is not None:
        block = -(-block // nm[1]) * nm[1]
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2]  # a view: updated in place
        d = np.diag(hinv)[i1:i2]
        keep = flat_mask(w1**2 / d**2, fraction) if nm is None else np.ones(w1.shape, bool)
        err = np.zeros_like(w1)
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                g = slice(i, i + nm[1])
                keep[:, g] = nm_mask(w1[:, g] ** 2 / d[g] ** 2, *nm)
            col = w1[:, i].copy()
            pruned = np.where(keep[:, i], col, 0.0)
            e = (col - pruned) / hinv[i1 + i, i1 + i]
            w1[:, i:] -= np.outer(e, hinv[i1 + i, i1 + i : i2])
            w1[:, i] = pruned  # exactly 0 where pruned, not a rounding residue
            err[:, i] = e
        w[:, i2:] -= err @ hinv[i1:i2, i2:]
    return w.astype(dtype), damp
