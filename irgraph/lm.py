"""The language-model interface every graph, runtime and backend shares.

Graph inputs (by name):
  input_ids        i64[batch, seq]         tokens (the encoder's, for encoder-decoders)
  position_ids     i64[batch, seq]         absolute positions of the new tokens
  attention_mask   i64[batch, past+seq]    1 = real token, 0 = padding
  past_key_values.{i}.key / .value         f32[batch, kv_heads, past, head_dim] (BNSH)
  past_key_values.{i}.latent               f32[batch, past, kv_rank+rope_dim] (MLA)
  prefix_len       i64[batch]              prefix-LM models: bidirectional prefix length
  domain_ids       i64[batch]              random routed experts (PanGu-Σ): each row's domain
  block_table      i64[batch, blocks]      a paged cache (paged-kv): each row's pages in order
  cache_lens       i64[batch]              a paged cache: tokens each row has cached
  decoder_input_ids, encoder_attention_mask  encoder-decoder models
  encoder_position_ids                     encoder-decoders with learned or rotary positions
Outputs: `logits` f32[batch, seq, vocab] and `present.{i}.*` for every `past_key_values.{i}.*`.
The cache shapes above are the default contract (concat BNSH); passes may restate it in the
graph's meta (other layouts, bounded or quantized storage): see kvcache.py.

`forward` drives any backend through a `run(feeds) -> outputs` callable, for a
full prefill or token by token through the KV cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from irgraph.errors import IRError
from irgraph.ir import Graph
from irgraph.types import TensorType

LOGITS = "logits"
# The last position's logits [batch, 1, vocab] (pass last-position-logits): what a generation step
# samples from. Backends give it its own entry point (`forward_last`) beside `forward`.
LOGITS_LAST = "logits_last"
DOMAIN = "domain_ids"  # i64[batch]: the domain of each row (random routed experts)
BLOCK_TABLE = "block_table"  # a paged cache's page list per row (ops/paged_attention.py)
CACHE_LENS = "cache_lens"  # a paged cache's cached tokens per row
PAGED_TOKENS = 256  # tokens per row a paged cache holds when its caller does not say
# inputs that make_feeds derives from the cache's state rather than from the tokens: a cache
# rewrite may trade one for another (paged-kv: attention_mask -> block_table, cache_lens)
CACHE_STATE = ("attention_mask", BLOCK_TABLE, CACHE_LENS)
PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."
Runner = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def present_name(past_name: str) -> str:
    """past_key_values.3.key -> present.3.key"""
    return PRESENT_PREFIX + past_name[len(PAST_PREFIX) :]


def cache_inputs(inputs: Mapping[str, TensorType]) -> dict[str, TensorType]:
    return {n: t for n, t in inputs.items() if n.startswith(PAST_PREFIX)}


def empty_cache(
    inputs: Mapping[str, TensorType], batch: int, tokens: int | None = None
) -> dict[str, np.ndarray]:
    """Zero-length caches for every past input: the `past` dim is 0, others concrete.

    A paged cache ([pages, block, ...]) gets a pool of `tokens` per row (PAGED_TOKENS when
    None), `batch` rows of contiguous pages: what `make_feeds`'s default block table reads.
    """
    paged = BLOCK_TABLE in inputs
    cache = {}
    for name, t in cache_inputs(inputs).items():
        if paged:
            block = t.shape[1]
            if not isinstance(block, int) or block < 1:
                raise IRError("a paged cache needs a fixed block size", got=t, where=name)
            per_row = -(-(PAGED_TOKENS if tokens is None else tokens) // block)
            shape = [batch * per_row, *(d if isinstance(d, int) else 0 for d in t.shape[1:])]
        else:
            shape = [
                batch if str(d) == "batch" else (0 if not isinstance(d, int) else d)
                for d in t.shape
            ]
        cache[name] = np.zeros(shape, dtype=t.dtype.numpy)
    return cache


def is_encoder_decoder(inputs: Mapping[str, TensorType]) -> bool:
    return "decoder_input_ids" in inputs


def make_feeds(
    inputs: Mapping[str, TensorType],
    ids: np.ndarray,
    cache: Mapping[str, np.ndarray],
    *,
    past_len: int,
    mask: np.ndarray | None = None,
    encoder_ids: np.ndarray | None = None,
    encoder_mask: np.ndarray | None = None,
    prefix_len: np.ndarray | None = None,
    domain: np.ndarray | int | None = None,
    cache_lens: np.ndarray | None = None,
    block_table: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Feeds for one call: `ids` are the new tokens [batch, seq] after `past_len` cached ones.

    `mask` covers past+new tokens (default all ones); positions count real
    tokens only, so left-padded rows get the positions they would have alone. `domain` (one id,
    or one per row; default 0) feeds a model that routes by domain. A paged cache takes each
    row's `cache_lens` (default `past_len`; positions follow them) and `block_table` (default:
    row b owns the b-th equal share of the pool, as `empty_cache` allocates it).
    """
    ids = np.asarray(ids, dtype=np.int64)
    batch, seq = ids.shape
    if mask is None:
        mask = np.ones((batch, past_len + seq), dtype=np.int64)
    positions = (np.cumsum(mask, axis=1) - 1).clip(min=0)[:, past_len:]
    if CACHE_LENS in inputs:
        lens = np.full((batch,), past_len, np.int64) if cache_lens is None else cache_lens
        lens = np.asarray(lens, dtype=np.int64).reshape(batch)
        positions = lens[:, None] + np.arange(seq, dtype=np.int64)
        if block_table is None:
            pool = next(_pages(v) for n, v in cache.items() if n.startswith(PAST_PREFIX))
            block_table = np.arange(pool - pool % batch, dtype=np.int64).reshape(batch, -1)
        cache = {**cache, CACHE_LENS: lens, BLOCK_TABLE: np.asarray(block_table, np.int64)}
    feeds: dict[str, np.ndarray] = dict(cache)
    token_key = "decoder_input_ids" if is_encoder_decoder(inputs) else "input_ids"
    feeds[token_key] = ids
    optional = {
        "position_ids": positions.astype(np.int64),
        "attention_mask": mask.astype(np.int64),
        "prefix_len": None
        if prefix_len is None
        else np.asarray(prefix_len, dtype=np.int64).reshape(batch),
        DOMAIN: np.full((batch,), 0, np.int64) if domain is None else _per_row(domain, batch),
    }
    if is_encoder_decoder(inputs):
        if encoder_ids is None:
            raise IRError("an encoder-decoder model needs encoder input ids")
        enc = np.asarray(encoder_ids, dtype=np.int64)
        optional["input_ids"] = enc
        enc_mask = (
            np.ones(enc.shape, dtype=np.int64)
            if encoder_mask is None
            else np.asarray(encoder_mask, np.int64)
        )
        optional["encoder_attention_mask"] = enc_mask
        optional["encoder_position_ids"] = (
            (np.cumsum(enc_mask, axis=1) - 1).clip(min=0).astype(np.int64)
        )
    for name, value in optional.items():
        if name in inputs:
            if value is None:
                if name == "prefix_len":  # default: the whole prompt is the prefix
                    value = np.full((batch,), past_len + seq, dtype=np.int64)
                else:
                    raise IRError(f"model input {name!r} needs a value")
            feeds[name] = value
    return feeds


def _pages(pool: object) -> int:
    """The leading dim of a cache held as numpy, a TVM tensor or an OrtValue (shape())."""
    shape = getattr(pool, "shape", None)
    shape = shape() if callable(shape) else shape
    if not shape:
        raise IRError("a paged cache pool needs a shape", got=type(pool).__name__)
    return int(shape[0])


def _per_row(value: np.ndarray | int, batch: int) -> np.ndarray:
    """One value per row: a scalar repeated, or an array of `batch`."""
    a = np.asarray(value, dtype=np.int64)
    if a.ndim == 0:
        return np.full((batch,), int(a), np.int64)
    if a.shape != (batch,):
        raise IRError("one domain id per row", expected=f"shape ({batch},)", got=a.shape)
    return a


def forward(
    run: Runner,
    inputs: Mapping[str, TensorType],
    ids: np.ndarray,
    *,
    decode: bool = False,
    **kw: np.ndarray | None,
) -> np.ndarray:
    """Logits [batch, seq, vocab] for `ids`, in one call or one token at a time through the cache.

    Decoding feeds a prefix-LM's prefix in one call (it is bidirectional) and
    slices `mask` (covering all of `ids`) to the tokens seen so far.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim == 1:
        ids = ids[None]
    cache = empty_cache(inputs, ids.shape[0], tokens=ids.shape[1])
    if not decode:
        return _logits(run(make_feeds(inputs, ids, cache, past_len=0, **kw)))
    rows = []
    prefix = kw.pop("prefix_len", None)
    mask = kw.pop("mask", None)
    if prefix is None and "prefix_len" in inputs:
        prefix = np.full((ids.shape[0],), ids.shape[1], dtype=np.int64)
    # A prefix-LM's prefix attends bidirectionally, so it goes in one call; the rest token by token.
    first = 1 if prefix is None else int(np.clip(np.min(prefix), 1, ids.shape[1]))
    bounds = [0, *range(first, ids.shape[1] + 1)]
    for lo, hi in zip(bounds, bounds[1:]):
        step_mask = None if mask is None else np.asarray(mask)[:, :hi]
        out = run(
            make_feeds(
                inputs, ids[:, lo:hi], cache, past_len=lo, prefix_len=prefix, mask=step_mask, **kw
            )
        )
        rows.append(_logits(out))
        cache = {name: np.asarray(out[present_name(name)]) for name in cache}
    return np.concatenate(rows, axis=1)


def _logits(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    if LOGITS not in outputs:
        raise IRError(
            "the model has no logits output to run as a language model",
            expected=LOGITS,
            got=", ".join(outputs) or "no outputs",
        )
    return np.asarray(outputs[LOGITS])


def graph_inputs(graph: Graph) -> dict[str, TensorType]:
    return {n: v.type for n, v in graph.inputs.items()}


def interpret(
    graph: Graph, ids: np.ndarray, *, decode: bool = False, **kw: np.ndarray | None
) -> np.ndarray:
    """Logits of `graph` in the reference interpreter (see `forward`)."""
    from irgraph.interpreter import run

    return forward(lambda feeds: run(graph, feeds), graph_inputs(graph), ids, decode=decode, **kw)
