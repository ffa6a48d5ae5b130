"""Held-out quality of a language model: mean next-token loss, perplexity and bits per byte.

    windows = token_windows(stream, seq=256)              # [n, seq + 1] int64
    score = score_windows(session.forward, windows, bytes_per_token=1.0)
    score.bits_per_byte, score.perplexity

A window of seq + 1 tokens is fed as its first seq tokens and scored on predicting the last
seq (every position, from the context inside the window). Windows start every seq tokens,
so every token but the first is scored once; the text's tail that fills no whole window is not
scored. The loss is the natural-log cross-entropy,
computed in float64 from the model's logits (a log-softmax over the vocabulary); bits per
byte = loss / ln 2 / bytes per token, as the trainer's held-out evaluation reports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from irgraph.errors import ConfigError


@dataclass(frozen=True)
class Score:
    nats: float  # summed over every scored token
    tokens: int
    windows: int
    bytes_per_token: float
    window_nats: tuple[float, ...] = field(default=(), repr=False, compare=False)  # per window

    @property
    def loss(self) -> float:
        """Mean cross-entropy, nats per token."""
        return self.nats / max(self.tokens, 1)

    @property
    def perplexity(self) -> float:
        """Per token."""
        return math.exp(min(self.loss, 700.0))

    @property
    def bits_per_byte(self) -> float:
        return self.loss / math.log(2) / self.bytes_per_token


def token_windows(stream: np.ndarray, seq: int, max_tokens: int = 0) -> np.ndarray:
    """Windows [n, seq + 1] of `stream` starting every seq tokens (one window's last target is
    the next one's first input); with `max_tokens`, about that many tokens, spread evenly."""
    n_all = (len(stream) - 1) // seq
    if n_all < 1:
        raise ConfigError(
            "the text is shorter than one window",
            expected=f">= {seq + 1} tokens (or a smaller --seq)",
            got=f"{len(stream)} tokens",
            where="--corpus",
        )
    n = n_all if max_tokens <= 0 else max(1, min(n_all, math.ceil(max_tokens / seq)))
    picks = np.linspace(0, n_all - 1, n).round().astype(np.int64)
    return np.stack([stream[i * seq : i * seq + seq + 1] for i in picks]).astype(np.int64)


def score_windows(
    forward: Callable[[np.ndarray], np.ndarray],
    windows: np.ndarray,
    *,
    bytes_per_token: float,
    batch: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> Score:
    """Summed next-token loss of `windows` [n, seq + 1]; `forward(ids)` gives logits [b, seq, V]."""
    per_window: list[float] = []
    for i in range(0, len(windows), batch):
        rows = windows[i : i + batch]
        logits = np.asarray(forward(rows[:, :-1]), np.float64)
        top = logits.max(axis=-1, keepdims=True)
        log_z = top[..., 0] + np.log(np.exp(logits - top).sum(axis=-1))
        picked = np.take_along_axis(logits, rows[:, 1:, None], axis=-1)[..., 0]
        per_window += np.sum(log_z - picked, axis=-1).tolist()
        if progress is not None:
            progress(min(i + batch, len(windows)), len(windows))
    tokens = int(windows.shape[0] * (windows.shape[1] - 1))
    nats = float(np.sum(per_window))
    return Score(nats, tokens, len(windows), bytes_per_token, tuple(per_window))


def paired_difference(a: Score, b: Score) -> tuple[float, float]:
    """(bits per byte of a - b, its standard error) from the two scores' per-window losses on
    the same windows: the windows' differences vary far less than the windows themselves, so
    two models' gap is known much better than either one's bits per byte."""
    if len(a.window_nats) != len(b.window_nats) or len(a.window_nats) < 2:
        raise ValueError("paired_difference needs two scores of the same >= 2 windows")
    per_byte = (a.tokens / a.windows) * a.bytes_per_token * math.log(2)
    d = (np.asarray(a.window_nats) - np.asarray(b.window_nats)) / per_byte
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
