"""Training batches: windows of a corpus's token streams (irgraph.text reads the corpus).

Batches are windows at random offsets drawn from a generator seeded by (seed, step): any
step's batch can be recomputed, which is what makes resuming and multi-process training
reproduce a single run exactly. Held-out windows are evenly spread and never overlap.
"""

from __future__ import annotations

import math

import numpy as np

from irgraph.errors import ConfigError


def batch_windows(tokens: np.ndarray, step: int, batch: int, seq_len: int, seed: int) -> np.ndarray:
    """The global batch of step `step`: [batch, seq_len + 1] windows at seeded random offsets."""
    if len(tokens) < seq_len + 2:
        raise ConfigError(
            "the training text is shorter than one window",
            expected=f">= {seq_len + 2} tokens",
            got=len(tokens),
            where="--seq-len",
        )
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch)
    return np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)


def eval_windows(tokens: np.ndarray, seq_len: int, max_tokens: int) -> np.ndarray:
    """Non-overlapping held-out windows [n, seq_len + 1], evenly spread.

    About `max_tokens` in all.
    """
    n_all = (len(tokens) - 1) // seq_len
    if n_all < 1:
        raise ConfigError(
            "the held-out text is shorter than one window",
            expected=f">= {seq_len + 1} tokens",
            got=len(tokens),
            where="--seq-len",
        )
    n = max(1, min(n_all, math.ceil(max_tokens / seq_len)))
    picks = np.linspace(0, n_all - 1, n).round().astype(np.int64)
    return np.stack([tokens[i * seq_len : i * seq_len + seq_len + 1] for i in picks]).astype(
        np.int64
    )
