"""tokenizer.json documents of a BPE model, built in one place (the `tokenizers` format).

Two writers make them from tables rather than by training: the GGUF importer (a byte-level BPE
vocabulary and merges read from `tokenizer.ggml.*`) and the Hugging Face exporter (irgraph's
byte vocabulary as a merge-free BPE over GPT-2's byte alphabet). Both go through `bpe_json`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def added_token(token_id: int, content: str, *, special: bool, normalized: bool) -> dict[str, Any]:
    """One `added_tokens` entry (matched whole, never split by the model)."""
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": normalized,
        "special": special,
    }


def byte_level(*, use_regex: bool, trim_offsets: bool) -> dict[str, Any]:
    """A ByteLevel pre-tokenizer / decoder / post-processor entry (no prefix space)."""
    return {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": trim_offsets,
        "use_regex": use_regex,
    }


def bpe_json(
    vocab: Mapping[str, int],
    merges: Sequence[Sequence[str]],
    *,
    added: Sequence[dict[str, Any]] = (),
    pre_tokenizer: dict[str, Any] | None,
    post_processor: dict[str, Any] | None,
    decoder: dict[str, Any] | None,
    indent: int | None = None,
) -> str:
    """The tokenizer.json text of a BPE model with these tables and stages."""
    data = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": list(added),
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": decoder,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": dict(vocab),
            "merges": [list(m) for m in merges],
        },
    }
    return json.dumps(data, ensure_ascii=False, indent=indent)


__all__ = ["added_token", "bpe_json", "byte_level"]
