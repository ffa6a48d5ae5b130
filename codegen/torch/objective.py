"""Language-modelling batches for any graph kind: feeds, targets and which positions count.

- decoder: predict token t+1 from tokens 0..t.
- prefix-LM (`prefix_len` input): the first half of each window is the
  bidirectional prefix; only positions that cannot see their target count.
- encoder-decoder: the encoder reads the first half, the decoder (started with
  `decoder_start_token_id`) predicts the second.
Feeds come from `irgraph.lm.make_feeds`, the convention every backend shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from irgraph.lm import empty_cache, is_encoder_decoder, make_feeds
from irgraph.types import TensorType


def lm_batch(
    inputs: Mapping[str, TensorType], windows: np.ndarray, meta: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(feeds, targets [B, T], weights [B, T] of 0/1) for windows [B, S+1] of token ids."""
    batch, width = windows.shape
    cache = empty_cache(inputs, batch)
    if is_encoder_decoder(inputs):
        half = width // 2
        target = windows[:, half:]
        start = np.full((batch, 1), int(meta.get("decoder_start_token_id", 0)), dtype=np.int64)
        dec_in = np.concatenate([start, target[:, :-1]], axis=1)
        feeds = make_feeds(inputs, dec_in, cache, past_len=0, encoder_ids=windows[:, :half])
        return feeds, target, np.ones(target.shape, np.float32)
    ids, target = windows[:, :-1], windows[:, 1:]
    weights = np.ones(target.shape, np.float32)
    prefix = None
    if "prefix_len" in inputs:
        n = ids.shape[1] // 2
        prefix = np.full((batch,), n, dtype=np.int64)
        weights[:, : max(n - 1, 0)] = (
            0  # position t < n-1 sees token t+1 through the bidirectional prefix
        )
    return make_feeds(inputs, ids, cache, past_len=0, prefix_len=prefix), target, weights


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats per token) over the positions with weight 1."""
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    w = weights.flatten()
    return (nll * w).sum() / w.sum()
