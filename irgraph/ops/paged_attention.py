"""paged_attention: causal attention over a KV cache kept in fixed-size pages.

The pass paged-kv (passes/paged_kv.py) puts it in place of a cached `attention`. The cache is
a pool of pages shared by every row of the batch, [pages, block, kv_heads, head_dim] (a page
is `block` consecutive tokens of one row, flattened it is a [pages·block, kv_heads, head_dim]
token table, as vLLM's); `block_table` [batch, blocks] lists each row's pages in order and
`cache_lens` [batch] how many tokens each row has cached. Rows may differ in length: no padding,
no attention mask. A call with `seq` new tokens per row:

  writes    new token i of row b, at position p = cache_lens[b] + i, to page
            block_table[b, p // block], slot p % block (present = the pool after the writes)
  reads     row b's keys are its pages in table order, token j at position j; query i sees
            j <= cache_lens[b] + i (so entries past a row's length, and pages it has not used
            yet, are never read into a result)

Every block_table entry must name a page of the pool and rows must not share a page they
write (the runtime's allocator, and feeds.check_feeds, see to both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.ops.attention import new_tokens, sdpa
from irgraph.registry import Attr, Category, OpDef, expect, given, register
from irgraph.types import TensorType


def write_pages(
    pages: np.ndarray, new: np.ndarray, table: np.ndarray, lens: np.ndarray
) -> np.ndarray:
    """The pool after writing `new` [batch, seq, heads, dim] at each row's next positions."""
    batch, seq = new.shape[:2]
    block = pages.shape[1]
    pos = np.asarray(lens).reshape(batch, 1) + np.arange(seq)  # [batch, seq]
    page = np.take_along_axis(np.asarray(table), pos // block, axis=1)
    out = pages.astype(np.float32, copy=True)
    out[page.ravel(), (pos % block).ravel()] = new.reshape(batch * seq, *new.shape[2:])
    return out


def read_pages(pages: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Each row's tokens in order, BNSH [batch, heads, blocks·block, dim]."""
    rows = pages[np.asarray(table)]  # [batch, blocks, block, heads, dim]
    b, nb, blk, h, d = rows.shape
    return np.transpose(rows.reshape(b, nb * blk, h, d), (0, 2, 1, 3))


@register
class PagedAttention(OpDef):
    """Causal attention over a paged KV cache (see the module docstring)."""

    name = "paged_attention"
    inputs = ("q", "k", "v", "key_pages", "value_pages", "block_table", "cache_lens")
    outputs = ("out", "present_key_pages", "present_value_pages")
    category = Category.ATTENTION
    attrs = {
        "scale": Attr("float", None, optional=True, doc="softmax scale; default 1/sqrt(head_dim)"),
        "softcap": Attr("float", 0.0, doc="cap·tanh(s/cap) on scores; 0 = off"),
    }

    def infer(
        self,
        q: TensorType,
        k: TensorType,
        v: TensorType,
        key_pages: TensorType,
        value_pages: TensorType,
        block_table: TensorType,
        cache_lens: TensorType,
        scale: float | None,
        softcap: float,
    ) -> list[TensorType]:
        b, s, hq, d, hkv, dv = new_tokens(q, k, v)
        pages, block = key_pages.shape[:2]
        expect(
            isinstance(block, int)
            and block > 0
            and key_pages.shape == (pages, block, hkv, d)
            and value_pages.shape == (pages, block, hkv, dv),
            "the page pools must be [pages, block, kv_heads, head_dim] with a fixed block",
            expected=f"[pages, block > 0, {hkv}, {d}] and [.., {dv}]",
            got=(key_pages, value_pages),
        )
        expect(
            block_table.rank == 2
            and block_table.shape[0] == b
            and block_table.dtype in (DType.i64, DType.i32),
            "block_table must be integer [batch, blocks]",
            got=block_table,
        )
        expect(
            cache_lens.shape == (b,) and cache_lens.dtype in (DType.i64, DType.i32),
            "cache_lens must be integer [batch]",
            got=cache_lens,
        )
        return [TensorType(q.dtype, (b, s, hq, dv)), key_pages, value_pages]

    def ref(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        key_pages: np.ndarray,
        value_pages: np.ndarray,
        block_table: np.ndarray,
        cache_lens: np.ndarray,
        scale: float | None,
        softcap: float,
    ) -> list[np.ndarray]:
        batch, seq = q.shape[:2]
        present_k = write_pages(key_pages, k, block_table, cache_lens)
        present_v = write_pages(value_pages, v, block_table, cache_lens)
        keys, values = read_pages(present_k, block_table), read_pages(present_v, block_table)
        pos = np.asarray(cache_lens).reshape(batch, 1) + np.arange(seq)  # [batch, seq]
        allowed = np.arange(keys.shape[2])[None, None, None, :] <= pos[:, None, :, None]
        out = sdpa(
            np.transpose(q, (0, 2, 1, 3)).astype(np.float32),
            keys,
            values,
            scale=1.0 / math.sqrt(q.shape[3]) if scale is None else scale,
            softcap=softcap,
            allowed=allowed,
        )
        return [np.transpose(out, (0, 2, 1, 3)), present_k, present_v]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        """Over every key slot of the row's blocks (what the lowerings compute)."""
        b, s, hq, dv = outs[0].concrete(env)
        d = given(ins, 0).concrete(env)[3]
        slots = given(ins, 5).concrete(env)[1] * given(ins, 3).concrete(env)[1]
        return 2 * b * hq * s * slots * (d + dv)
