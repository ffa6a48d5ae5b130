"""`irgraph generate ART --prompt TEXT | --prompt-ids 1,2,3`: stream generated tokens.

Every mode streams as tokens come: one prompt's text (or, with --ids-only, its ids),
or with --json one JSON line per token of every row. A batch of prompts without
--json prints one line per row at the end. Ctrl-C stops generating and keeps what
was printed (the batch lines show what was generated so far); the exit status is 130.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

import irgraph.runtimes
from irgraph.artifact import MANIFEST, read_listed
from irgraph.cli.common import (
    FiniteFloat,
    checked_domain,
    domain_option,
    parse_ids,
    weight_options,
)
from irgraph.tokenizer import check_tokenizer, model_vocab

TOKENIZER = "tokenizer.json"


class _Codec:
    """tokenizer.json via `tokenizers` if the artifact has one, else UTF-8 bytes (zoo models)."""

    def __init__(self, folder: Path, vocab: int | None):
        self.vocab = vocab
        self.tokenizer = None
        if (folder / MANIFEST).is_file():  # an artifact: its own listed, hash-checked copy
            data = read_listed(folder, TOKENIZER)
        else:
            data = (folder / TOKENIZER).read_bytes() if (folder / TOKENIZER).is_file() else None
        if data is not None:
            from tokenizers import Tokenizer

            check_tokenizer(folder / TOKENIZER, vocab, data=data)  # its ids fit the model
            self.tokenizer = Tokenizer.from_str(data.decode("utf-8"))

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is not None:
            return self.tokenizer.encode(text).ids
        ids = list(text.encode("utf-8"))
        if self.vocab is not None and any(i >= self.vocab for i in ids):
            raise click.BadParameter(
                f"the model's vocabulary ({self.vocab}) is smaller than a byte; use --prompt-ids",
                param_hint="--prompt",
            )
        return ids

    def decode(self, ids: list[int]) -> str:
        if self.tokenizer is not None:
            return self.tokenizer.decode(ids)
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--prompt", "prompts", multiple=True, help="Prompt text (repeat for a batch).")
@click.option(
    "--prompt-ids",
    "prompt_ids",
    multiple=True,
    help="Comma-separated prompt token ids (repeatable).",
)
@click.option("-n", "--max-new-tokens", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--temperature", type=FiniteFloat(min=0), default=0.0, show_default=True, help="0 = greedy."
)
@click.option(
    "--top-k",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Sample from the k likeliest tokens (0 = off; needs --temperature > 0).",
)
@click.option(
    "--top-p",
    type=FiniteFloat(min=0, max=1, min_open=True),
    default=1.0,
    show_default=True,
    help="Sample from the smallest set of tokens holding this much probability (1 = off; "
    "needs --temperature > 0).",
)
@click.option("--seed", type=click.IntRange(min=0), help="Sampling seed.")
@click.option(
    "--stop-ids", help="Comma-separated ids that end a row (default: the model's eos_token_id)."
)
@click.option(
    "--ids-only",
    is_flag=True,
    help="Print token ids, not text (one prompt: streamed as they come, space-separated).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='JSON lines, one per token as it comes: {"row", "index", "id", "text"} ("text": the '
    "row's text that token adds).",
)
@domain_option
@weight_options
def generate(
    path: str,
    prompts: tuple[str, ...],
    prompt_ids: tuple[str, ...],
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int | None,
    stop_ids: str | None,
    ids_only: bool,
    as_json: bool,
    cast_weights: bool,
    allow_nonfinite: bool,
    domain: int | None,
) -> None:
    """Generate tokens from the model at PATH (artifact or saved graph), streaming them.

    Ctrl-C stops generating and keeps what was printed (exit status 130).
    """
    if bool(prompts) == bool(prompt_ids):
        raise click.UsageError("give --prompt or --prompt-ids (not both)")
    if temperature == 0 and (top_k or top_p < 1):
        given = " and ".join(o for o, on in (("--top-k", top_k), ("--top-p", top_p < 1)) if on)
        raise click.UsageError(
            f"{given} sample from the model's distribution: give --temperature > 0 "
            "(the default 0 is greedy, which ignores them)"
        )
    if ids_only and as_json:
        raise click.UsageError("give --ids-only or --json (the JSON lines hold the ids)")
    session = irgraph.runtimes.open(
        path, cast_weights=cast_weights, allow_nonfinite=allow_nonfinite
    )
    vocab = model_vocab(session.bounds, session.meta)
    codec = _Codec(Path(path), vocab)
    rows = (
        [codec.encode(p) for p in prompts]
        if prompts
        else [parse_ids(p, "--prompt-ids", vocab) for p in prompt_ids]
    )
    eos = session.meta.get("eos_token_id")
    stops = (
        parse_ids(stop_ids, "--stop-ids")
        if stop_ids
        else ([int(eos)] if isinstance(eos, int) else [])
    )
    printer = _Printer(codec, len(rows), ids_only, as_json)
    tokens = session.stream(
        rows,
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        stop_ids=stops,
        **checked_domain(session, domain),
    )
    try:
        for step in tokens:
            printer.step(np.asarray(step).tolist())
    except KeyboardInterrupt:
        printer.finish()
        n = sum(map(len, printer.generated))
        click.echo(f"interrupted: kept the {n} token(s) generated so far", err=True)
        raise click.exceptions.Exit(130) from None
    printer.finish()


class _Printer:
    """Prints generated tokens in the chosen form, as they come (see the module docstring)."""

    def __init__(self, codec: _Codec, rows: int, ids_only: bool, as_json: bool):
        self.codec = codec
        self.ids_only = ids_only
        self.as_json = as_json
        self.streams = as_json or rows == 1  # a batch without --json prints at the end
        self.generated: list[list[int]] = [[] for _ in range(rows)]
        self.shown = ["" for _ in range(rows)]

    def step(self, tokens: list[int]) -> None:
        for r, t in enumerate(tokens):
            if t < 0:  # this row has stopped
                continue
            self.generated[r].append(t)
            if self.as_json:
                record = {"row": r, "index": len(self.generated[r]) - 1, "id": t}
                click.echo(json.dumps({**record, "text": self._new_text(r)}))
            elif self.streams and self.ids_only:
                click.echo(f"{' ' if len(self.generated[r]) > 1 else ''}{t}", nl=False)
            elif self.streams:
                click.echo(self._new_text(r), nl=False)

    def _new_text(self, r: int) -> str:
        """The text row r's latest token adds (a token may end half a character: then "")."""
        full = self.codec.decode(self.generated[r])
        new = full[len(self.shown[r]) :]
        self.shown[r] = full
        return new

    def finish(self) -> None:
        """End the streamed line, or print the batch's rows."""
        if self.as_json:
            return
        if self.streams:
            click.echo()
            return
        for r, ids in enumerate(self.generated):
            text = " ".join(map(str, ids)) if self.ids_only else f"[{r}] {self.codec.decode(ids)}"
            click.echo(text)
