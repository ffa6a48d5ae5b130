"""Generation over a paged KV cache (pass paged-kv, irgraph/ops/paged_attention.py).

Every row gets pages from one pool as it grows: each prompt is prefilled on its own (no
padding: the pages it needs, taken from the free list), then all rows decode together in one
batch, each with its own length (`cache_lens`) and page list (`block_table`); a row crossing
a page boundary takes the next free page, so the rows' pages interleave in the pool. The pool
holds exactly the pages the longest possible generation needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from irgraph import lm
from irgraph.errors import RuntimeFailure


class PagePool:
    """Pages of `block` tokens handed out to rows in the order they need them."""

    def __init__(self, pages: int, block: int):
        self.block = block
        self.free = list(range(pages))
        self.rows: dict[int, list[int]] = {}

    def reserve(self, row: int, tokens: int) -> None:
        """Give `row` enough pages to hold `tokens`."""
        pages = self.rows.setdefault(row, [])
        while len(pages) * self.block < tokens:
            if not self.free:
                raise RuntimeFailure(
                    "the paged KV cache is out of pages",
                    expected=f"a pool for {tokens} tokens in row {row}",
                    got=f"{sum(map(len, self.rows.values()))} pages in use",
                )
            pages.append(self.free.pop(0))

    def table(self, rows: list[int]) -> np.ndarray:
        """block_table [len(rows), blocks]: each row's pages, padded with its first page (a
        valid page that paged_attention never reads into a result past the row's length)."""
        width = max(len(self.rows[r]) for r in rows)
        out = np.empty((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            pages = self.rows[r]
            out[i] = pages + [pages[0]] * (width - len(pages))
        return out


class PagedDecoder:
    """A session with a paged cache, driven row by row for the prompts, then as one batch."""

    def __init__(
        self, session: Any, rows: list[list[int]], max_new_tokens: int, extra: dict[str, Any]
    ):
        self.session, self.rows, self.extra = session, rows, extra
        inputs = session.inputs
        first = next(t for n, t in inputs.items() if n.startswith(lm.PAST_PREFIX))
        block = first.shape[1]
        if not isinstance(block, int):  # paged_attention's infer requires it
            raise RuntimeFailure("a paged cache needs a fixed block size", got=str(first))
        pages = sum(-(-(len(r) + max_new_tokens) // block) for r in rows)
        self.pool = PagePool(pages, block)
        self.cache: dict[str, Any] = {
            name: np.zeros(
                (pages, *(d if isinstance(d, int) else 0 for d in t.shape[1:])), dtype=t.dtype.numpy
            )
            for name, t in lm.cache_inputs(inputs).items()
        }
        self.lens = np.zeros(len(rows), dtype=np.int64)

    def prefill(self) -> np.ndarray:
        """Each prompt alone, in its own pages: the last logits of every row [batch, vocab]."""
        last = []
        for r, prompt in enumerate(self.rows):
            extra = {k: v[r : r + 1] for k, v in self.extra.items()}
            last.append(self._call([r], np.asarray([prompt], dtype=np.int64), extra)[0])
        return np.stack(last)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Every row's next token, in one batch: the last logits [batch, vocab]."""
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1, 1)
        return self._call(list(range(len(self.rows))), ids, self.extra)

    def _call(self, rows: list[int], ids: np.ndarray, extra: dict[str, Any]) -> np.ndarray:
        for r in rows:
            self.pool.reserve(r, int(self.lens[r]) + ids.shape[1])
        feeds = lm.make_feeds(
            self.session.inputs,
            ids,
            self.cache,
            past_len=0,
            cache_lens=self.lens[rows],
            block_table=self.pool.table(rows),
            **extra,
        )
        out, self.cache = self.session.step(feeds)
        self.lens[rows] += ids.shape[1]
        return np.asarray(out[:, -1], dtype=np.float32)
