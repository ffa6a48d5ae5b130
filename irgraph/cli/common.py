"""Helpers shared by CLI verbs: id lists."""

from __future__ import annotations

import click


def parse_ids(text: str, option: str, vocab: int | None = None) -> list[int]:
    """'1,2,3' -> [1, 2, 3], with a message naming the option on bad input.

    Ids must lie in 0..vocab-1 (when the model states its vocab size): an
    out-of-range id would otherwise fail deep in the embedding, or silently
    wrap around if negative.
    """
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers, got {text!r}", param_hint=option
        ) from None
    if not ids:
        raise click.BadParameter("expected at least one token id", param_hint=option)
    for i in ids:
        if i < 0 or (vocab is not None and i >= vocab):
            limit = f"0..{vocab - 1}" if vocab is not None else "a non-negative id"
            raise click.BadParameter(
                f"token id {i} is out of range (expected {limit})", param_hint=option
            )
    return ids
