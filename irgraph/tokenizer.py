"""A tokenizer.json must fit its model: every id it can produce indexes the token table.

A tokenizer from another checkpoint (or a model whose vocabulary was cut) gives ids past
the embedding table; `compile` (for the tokenizer it copies into an artifact) and
`generate` (for the one it encodes prompts with) refuse it with both numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from irgraph.errors import ConfigError

TOKEN_INPUTS = ("input_ids", "decoder_input_ids")


def model_vocab(bounds: Mapping[str, int], meta: Mapping[str, Any]) -> int | None:
    """Rows of the model's token table: its `input_ids` bound, else the meta's vocab_size."""
    for name in TOKEN_INPUTS:
        if name in bounds:
            return int(bounds[name])
    vocab = meta.get("vocab_size")
    return int(vocab) if isinstance(vocab, int) else None


def max_token_id(path: str | os.PathLike[str], data: bytes | None = None) -> int:
    """The largest id the tokenizer.json at `path` can produce (added tokens included).

    `data`: the file's bytes already read (an artifact's hash-checked copy); `path` names it.
    """
    from tokenizers import Tokenizer

    try:
        if data is not None:
            tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        else:
            tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception with a one-line reason
        raise ConfigError(
            f"cannot read the tokenizer: {str(e).splitlines()[0]}", where=str(path)
        ) from None
    ids = tokenizer.get_vocab(with_added_tokens=True).values()
    return max(ids, default=-1)


def check_tokenizer(
    path: str | os.PathLike[str], vocab: int | None, *, data: bytes | None = None
) -> None:
    """ConfigError if the tokenizer at `path` produces ids outside a `vocab`-row token table."""
    top = max_token_id(
        path, data
    )  # read even when there is nothing to compare: a broken file fails here
    if vocab is not None and top >= vocab:
        raise ConfigError(
            f"the tokenizer's ids exceed the model's vocabulary of {vocab} tokens "
            "(a tokenizer from another model?)",
            expected=f"ids 0..{vocab - 1}",
            got=f"ids up to {top}",
            where=str(Path(path)),
        )


__all__ = ["check_tokenizer", "max_token_id", "model_vocab"]
