"""ring_attention: sliding-window attention over a ring-buffer KV cache of `window` slots.

The pass sliding-window-cache (passes/sliding_window_cache.py) puts it in place of a cached
`attention` with a window, so the cache stops growing. Position t (a column of key_mask) is
stored in slot t mod window; a call with `seq` new tokens after t = key_mask width - seq
earlier ones:

  keys      the `window` slots of past_key (BNSH [batch, kv_heads, window, head_dim]) followed
            by the new tokens; slot j holds position t-1 - ((t-1-j) mod window), empty when that
            is negative; the new tokens sit at t, t+1, ...
  visible   key position p for query t+i:  p >= 0, p <= t+i, t+i - p < window and
            key_mask[b, p] != 0 (the rules of `attention` with causal and window, by position)
  present   the ring after writing new token i to slot (t+i) mod window (only the last
            `window` of a longer call survive)

so with the same inputs it computes what `attention` with that window does over the whole
unbounded cache: window slots hold every key a query can see (t+i-window < p). key_mask still
covers every position (8 bytes per token and row, beside the cache's kilobytes), which gives t
and the padding of each slot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.ops.attention import new_tokens, sdpa
from irgraph.registry import Attr, Category, OpDef, expect, given, register
from irgraph.types import TensorType


def ring_positions(t: int, window: int, seq: int) -> np.ndarray:
    """The absolute position of each key a call sees (-1: an empty slot), [window + seq]."""
    slots = t - 1 - np.mod(t - 1 - np.arange(window), window)
    return np.concatenate([np.where(slots >= 0, slots, -1), t + np.arange(seq)])


def ring_sources(t: int, window: int, seq: int) -> np.ndarray:
    """For each slot of the present ring, its index in [past slots, new tokens], [window]."""
    j = np.arange(window)
    r = np.mod(j - t, window)  # the first new token that lands in slot j
    newest = r + window * ((seq - 1 - r) // window)  # the last one that does
    return np.where(r < seq, window + newest, j)


def ring_visible(key_mask: np.ndarray, window: int, seq: int) -> np.ndarray:
    """Bool [batch, 1, seq, window + seq]: which key each query may attend to."""
    t = key_mask.shape[1] - seq
    kpos = ring_positions(t, window, seq)[None, :]
    qpos = (t + np.arange(seq))[:, None]
    rule = (kpos >= 0) & (kpos <= qpos) & (qpos - kpos < window)  # [seq, window + seq]
    real = np.asarray(key_mask)[:, np.maximum(kpos[0], 0)] != 0  # [batch, window + seq]
    return rule[None, None] & real[:, None, None, :]


@register
class RingAttention(OpDef):
    """Causal sliding-window attention over a ring-buffer cache (see the module docstring)."""

    name = "ring_attention"
    inputs = ("q", "k", "v", "past_key", "past_value", "key_mask")
    outputs = ("out", "present_key", "present_value")
    category = Category.ATTENTION
    attrs = {
        "window": Attr("int", doc="ring slots = the attention's window in tokens (> 0)"),
        "scale": Attr("float", None, optional=True, doc="softmax scale; default 1/sqrt(head_dim)"),
        "softcap": Attr("float", 0.0, doc="cap·tanh(s/cap) on scores; 0 = off"),
    }

    def infer(
        self,
        q: TensorType,
        k: TensorType,
        v: TensorType,
        past_key: TensorType,
        past_value: TensorType,
        key_mask: TensorType,
        window: int,
        scale: float | None,
        softcap: float,
    ) -> list[TensorType]:
        expect(window > 0, "ring_attention needs a window > 0", got=window)
        b, s, hq, d, hkv, dv = new_tokens(q, k, v)
        expect(
            past_key.shape == (b, hkv, window, d) and past_value.shape == (b, hkv, window, dv),
            "the ring caches must be [batch, kv_heads, window, head_dim]",
            expected=f"[{b}, {hkv}, {window}, {d}] and [.., {dv}]",
            got=(past_key, past_value),
        )
        expect(
            key_mask.rank == 2 and key_mask.shape[0] == b,
            "key_mask must be [batch, past+seq] (every position, not only the ring's)",
            got=key_mask,
        )
        return [TensorType(q.dtype, (b, s, hq, dv)), past_key, past_value]

    def ref(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        past_key: np.ndarray,
        past_value: np.ndarray,
        key_mask: np.ndarray,
        window: int,
        scale: float | None,
        softcap: float,
    ) -> list[np.ndarray]:
        seq = q.shape[1]
        t = key_mask.shape[1] - seq
        k_all = np.concatenate(
            [past_key.astype(np.float32), np.transpose(k, (0, 2, 1, 3)).astype(np.float32)], 2
        )
        v_all = np.concatenate(
            [past_value.astype(np.float32), np.transpose(v, (0, 2, 1, 3)).astype(np.float32)], 2
        )
        out = sdpa(
            np.transpose(q, (0, 2, 1, 3)).astype(np.float32),
            k_all,
            v_all,
            scale=1.0 / math.sqrt(q.shape[3]) if scale is None else scale,
            softcap=softcap,
            allowed=ring_visible(key_mask, window, seq),
        )
        sources = ring_sources(t, window, seq)
        return [
            np.transpose(out, (0, 2, 1, 3)),
            np.take(k_all, sources, axis=2),
            np.take(v_all, sources, axis=2),
        ]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        b, s, hq, dv = outs[0].concrete(env)
        d = given(ins, 0).concrete(env)[3]
        return 2 * b * hq * s * (attrs["window"] + s) * (d + dv)
