"""Helpers shared by CLI verbs: id lists and numeric option types that refuse nan and inf."""

from __future__ import annotations

import math
import re
from typing import Any

import click

_INT = re.compile(r"-?[0-9]+")
_MAX_ID = 2**63 - 1  # ids travel as int64


def parse_ids(text: str, option: str, vocab: int | None = None) -> list[int]:
    """'1,2,3' -> [1, 2, 3], with a message naming the option on bad input.

    Every item must be a decimal integer: '1,,2' or '1,2,' is refused rather
    than read as [1, 2]. Ids must lie in 0..vocab-1 (when the model states its
    vocab size): an out-of-range id would otherwise fail deep in the embedding,
    or silently wrap around if negative.
    """
    items = [t.strip() for t in text.split(",")]
    if items == [""]:
        raise click.BadParameter("expected at least one token id", param_hint=option)
    ids = []
    for k, item in enumerate(items, 1):
        if not _INT.fullmatch(item):
            what = "is empty" if not item else f"is {item!r}, not an integer"
            raise click.BadParameter(
                f"item {k} of {text!r} {what} (expected comma-separated integers)",
                param_hint=option,
            )
        ids.append(int(item))
    top = _MAX_ID if vocab is None else vocab - 1
    for i in ids:
        if not 0 <= i <= top:
            raise click.BadParameter(
                f"token id {i} is out of range (expected 0..{top})", param_hint=option
            )
    return ids


class FiniteFloat(click.FloatRange):
    """click.FloatRange that also refuses nan and +-inf, which pass every range check.

    (nan compares false with every bound, so FloatRange(min=0) accepts 'nan'.)
    """

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


def cast_weights_option(command: Any) -> Any:
    """`--cast-weights`, for the verbs that load a saved graph's weights."""
    return click.option(
        "--cast-weights",
        is_flag=True,
        help="Saved graphs: cast weights stored in another dtype than the graph declares "
        "(e.g. f16 or int64 where it says f32) instead of refusing them.",
    )(command)


def weight_options(command: Any) -> Any:
    """`--cast-weights` and `--allow-nonfinite`, for the verbs that run or compile weights."""
    command = click.option(
        "--allow-nonfinite",
        is_flag=True,
        help="Use weights that hold NaN or Inf (refused by default: they make NaN logits).",
    )(command)
    return cast_weights_option(command)


def domain_option(command: Any) -> Any:
    """`--domain N`, for the verbs that run a model: the domain id of models that route by it."""
    return click.option(
        "--domain",
        type=click.IntRange(min=0),
        help="Models with random routed experts (PanGu-Σ): the domain id of every row (default 0).",
    )(command)


def checked_domain(session: Any, domain: int | None) -> dict[str, int]:
    """{"domain": N} for a session whose model takes a domain id (N within its table), {} for
    one that does not (where giving --domain is an error)."""
    from irgraph.lm import DOMAIN

    if DOMAIN not in session.inputs:
        if domain is not None:
            raise click.BadParameter(
                "only models with random routed experts take a domain", param_hint="--domain"
            )
        return {}
    domains = session.bounds.get(DOMAIN)
    if domain is not None and domains is not None and domain >= domains:
        raise click.BadParameter(
            f"expected a domain id in 0..{domains - 1}, got {domain}", param_hint="--domain"
        )
    return {"domain": domain or 0}
