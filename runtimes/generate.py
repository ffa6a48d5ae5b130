"""Token generation with a KV cache, shared by every runtime (`Session.generate`, `.stream`).

Prompts of different lengths are left-padded into one batch (mask 0 on the
padding; positions count real tokens only). A session whose attention cannot
take left padding (`session.left_padding` False, e.g. ORT GroupQueryAttention)
instead runs one "lane" per prompt length, each an unpadded batch, stepped
together. Encoder-decoder models feed the prompt to the encoder and start the
decoder from `decoder_start_token_id`; prefix-LM models get the prompt as the
bidirectional prefix.

Sampling: greedy (temperature 0) or temperature / top-k / top-p from a seeded
numpy generator, rows drawn in order, so a seed reproduces a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from irgraph import kvcache, lm
from irgraph.errors import ConfigError, InputError
from irgraph.feeds import context_limit
from irgraph.runtimes.paged import PagedDecoder


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = None

    def __post_init__(self) -> None:
        # Written so that nan fails: it compares false with every bound.
        if not (
            0 <= self.temperature < math.inf
            and self.top_k >= 0
            and 0 < self.top_p <= 1
            and (self.seed is None or self.seed >= 0)
        ):
            raise ConfigError(
                "bad sampling options",
                expected="0 <= temperature < inf, top_k >= 0, 0 < top_p <= 1, seed >= 0 or None",
                got=f"temperature={self.temperature}, top_k={self.top_k}, top_p={self.top_p}, "
                f"seed={self.seed}",
            )

    def choose(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Next token per row of logits [batch, vocab]."""
        if self.temperature == 0:
            return np.argmax(logits, axis=-1)
        out = np.empty(len(logits), dtype=np.int64)
        for i, row in enumerate(logits.astype(np.float64) / self.temperature):
            if self.top_k:
                kth = np.sort(row)[-min(self.top_k, len(row))]
                row = np.where(row < kth, -np.inf, row)
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            if self.top_p < 1:
                order = np.argsort(-probs, kind="stable")
                keep = (
                    np.cumsum(probs[order]) - probs[order] < self.top_p
                )  # the smallest prefix reaching top_p
                mask = np.zeros_like(probs, dtype=bool)
                mask[order[keep]] = True
                probs = np.where(mask, probs, 0)
                probs /= probs.sum()
            out[i] = rng.choice(len(probs), p=probs)
        return out


@dataclass
class _Lane:
    rows: list[int]
    ids: np.ndarray  # what the next call feeds [batch, seq]
    mask: np.ndarray  # [batch, past+seq]
    cache: dict[str, Any]
    past: int = 0
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def _prompts(prompts: Any) -> list[list[int]]:
    raw = prompts.tolist() if isinstance(prompts, np.ndarray) else list(prompts)
    if raw and not isinstance(raw[0], (list, tuple, np.ndarray)):
        raw = [raw]  # one prompt given flat: [1, 2, 3]
    rows = [[int(t) for t in p] for p in raw]
    if not rows or any(len(r) == 0 for r in rows):
        raise ConfigError("every prompt needs at least one token", got=[len(r) for r in rows])
    return rows


def stream(
    session: Any,
    prompts: Any,
    max_new_tokens: int,
    *,
    sampling: Sampling = Sampling(),
    stop_ids: Sequence[int] = (),
    pad_id: int | None = None,
    domain: int = 0,
) -> Iterator[np.ndarray]:
    """Yield the new token of every row per step ([batch] int64; -1 once a row has stopped).

    `domain` is every row's domain id for a model that routes by domain (PanGu-Σ)."""
    if max_new_tokens < 1:
        raise ConfigError("max_new_tokens must be at least 1", got=max_new_tokens)
    if lm.DOMAIN not in session.inputs and domain != 0:
        raise ConfigError("only models with random routed experts take a domain", got=domain)
    rows = _prompts(prompts)
    inputs = session.inputs
    kvcache.require_drivable(session.meta, session.where or "the session", inputs)
    _check_context(session, rows, max_new_tokens)
    pad = int(session.meta.get("pad_token_id") or 0) if pad_id is None else pad_id
    encdec = lm.is_encoder_decoder(inputs)
    if encdec or getattr(session, "left_padding", True) or len({len(r) for r in rows}) == 1:
        groups = [list(range(len(rows)))]
    else:
        groups = [
            [i for i, r in enumerate(rows) if len(r) == n] for n in sorted({len(r) for r in rows})
        ]
    extra = {"domain": np.full((len(rows),), domain, np.int64)} if lm.DOMAIN in inputs else {}
    rng = np.random.default_rng(sampling.seed)
    stops = set(int(s) for s in stop_ids)
    done = np.zeros(len(rows), dtype=bool)
    if lm.BLOCK_TABLE in inputs:  # a paged cache: rows prefilled alone, decoded as one batch
        paged = PagedDecoder(session, rows, max_new_tokens, extra)
        logits, advance = paged.prefill(), paged.step
    else:
        lanes = [_start(session, [rows[i] for i in g], g, pad, encdec) for g in groups]
        for lane in lanes:
            lane.extra.update({k: v[lane.rows] for k, v in extra.items()})
        logits = _lanes_step(session, lanes, len(rows))

        def advance(tokens: np.ndarray) -> np.ndarray:
            for lane in lanes:
                lane.ids = tokens[lane.rows][:, None]
                ones = np.ones((len(lane.rows), 1), dtype=np.int64)
                lane.mask = np.concatenate([lane.mask, ones], axis=1)
            return _lanes_step(session, lanes, len(rows))

    for step in range(max_new_tokens):
        tokens = sampling.choose(logits, rng).astype(np.int64)
        tokens[done] = -1
        yield tokens
        done |= np.isin(tokens, list(stops)) if stops else np.zeros_like(done)
        if done.all() or step == max_new_tokens - 1:
            return
        logits = advance(np.where(tokens < 0, pad, tokens))


def _lanes_step(session: Any, lanes: list[_Lane], batch: int) -> np.ndarray:
    """One call per lane: the last logits of every row [batch, vocab]."""
    logits = np.empty((batch, 0), dtype=np.float32)
    for lane in lanes:
        feeds = lm.make_feeds(
            session.inputs, lane.ids, lane.cache, past_len=lane.past, mask=lane.mask, **lane.extra
        )
        out, lane.cache = session.step(feeds)
        lane.past = lane.mask.shape[1]
        if logits.shape[1] == 0:
            logits = np.empty((batch, out.shape[-1]), dtype=np.float32)
        logits[lane.rows] = out[:, -1]
    return logits


def _check_context(session: Any, rows: list[list[int]], max_new_tokens: int) -> None:
    """Refuse up front a generation that would run past a learned position table.

    The last new token is never fed back, so the model sees prompt + max_new_tokens - 1 tokens
    (an encoder-decoder's decoder: its start token + max_new_tokens - 1).
    """
    limit = context_limit(getattr(session, "bounds", {}))
    if limit is None or max_new_tokens < 1:
        return
    prompt = 1 if lm.is_encoder_decoder(session.inputs) else max(len(r) for r in rows)
    if prompt + max_new_tokens - 1 > limit:
        raise InputError(
            f"a prompt of {prompt} tokens plus {max_new_tokens} new tokens runs past the "
            f"model's context of {limit} positions (its learned position table)",
            expected=f"max_new_tokens <= {limit - prompt + 1}",
            got=max_new_tokens,
        )


def _start(
    session: Any, prompts: list[list[int]], rows: list[int], pad: int, encdec: bool
) -> _Lane:
    inputs = session.inputs
    width = max(len(p) for p in prompts)
    padded = np.full((len(prompts), width), pad, dtype=np.int64)
    mask = np.zeros((len(prompts), width), dtype=np.int64)
    for i, p in enumerate(prompts):
        if encdec:  # the encoder takes right padding under its own mask
            padded[i, : len(p)], mask[i, : len(p)] = p, 1
        else:
            padded[i, width - len(p) :], mask[i, width - len(p) :] = p, 1
    cache = lm.empty_cache(inputs, len(prompts))
    if encdec:
        start = int(session.meta.get("decoder_start_token_id") or 0)
        ids = np.full((len(prompts), 1), start, dtype=np.int64)
        return _Lane(
            rows,
            ids,
            np.ones((len(prompts), 1), dtype=np.int64),
            cache,
            extra={"encoder_ids": padded, "encoder_mask": mask},
        )
    extra = (
        {"prefix_len": np.full((len(prompts),), width, dtype=np.int64)}
        if "prefix_len" in inputs
        else {}
    )
    return _Lane(rows, padded, mask, cache, extra=extra)


def generate(
    session: Any,
    prompts: Any,
    max_new_tokens: int,
    *,
    sampling: Sampling = Sampling(),
    stop_ids: Sequence[int] = (),
    pad_id: int | None = None,
    callback: Callable[[int, np.ndarray], None] | None = None,
    domain: int = 0,
) -> list[list[int]]:
    """The generated tokens of every row (a stop id is included; nothing after it)."""
    result: list[list[int]] = [[] for _ in _prompts(prompts)]
    for step, tokens in enumerate(
        stream(
            session,
            prompts,
            max_new_tokens,
            sampling=sampling,
            stop_ids=stop_ids,
            pad_id=pad_id,
            domain=domain,
        )
    ):
        if callback is not None:
            callback(step, tokens)
        for row, t in enumerate(tokens):
            if t >= 0:
                result[row].append(int(t))
    return result
