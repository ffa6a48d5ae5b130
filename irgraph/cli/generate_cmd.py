"""`irgraph generate ART --prompt TEXT | --prompt-ids 1,2,3`: stream generated tokens."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

import irgraph.runtimes
from irgraph.artifact import MANIFEST, read_listed
from irgraph.cli.common import FiniteFloat, parse_ids, weight_options
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
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True, help="0 = off.")
@click.option(
    "--top-p",
    type=FiniteFloat(min=0, max=1, min_open=True),
    default=1.0,
    show_default=True,
    help="1 = off.",
)
@click.option("--seed", type=click.IntRange(min=0), help="Sampling seed.")
@click.option(
    "--stop-ids", help="Comma-separated ids that end a row (default: the model's eos_token_id)."
)
@click.option("--ids-only", is_flag=True, help="Print token ids, not text.")
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
    cast_weights: bool,
    allow_nonfinite: bool,
) -> None:
    """Generate tokens from the model at PATH (artifact or saved graph), streaming them."""
    if bool(prompts) == bool(prompt_ids):
        raise click.UsageError("give --prompt or --prompt-ids (not both)")
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
    generated: list[list[int]] = [[] for _ in rows]
    text = ids_only or len(rows) > 1
    shown = ""
    for tokens in session.stream(
        rows,
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        stop_ids=stops,
    ):
        for r, t in enumerate(np.asarray(tokens).tolist()):
            if t >= 0:
                generated[r].append(t)
        if not text and tokens[0] >= 0:  # one prompt: stream its text as it grows
            full = codec.decode(generated[0])
            click.echo(full[len(shown) :], nl=False)
            shown = full
    if not text:
        click.echo()
        return
    for r, ids in enumerate(generated):
        click.echo(" ".join(map(str, ids)) if ids_only else f"[{r}] {codec.decode(ids)}")
