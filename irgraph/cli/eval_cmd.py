"""`irgraph eval PATH --corpus DIR`: held-out bits per byte and perplexity of a graph or artifact.

The model runs its own numerics: a saved graph in the reference interpreter (quantized weights
dequantized exactly as `irgraph.quant` defines), an artifact in its runtime's session. Text is
read as `train --corpus` reads it (text files, in path order, concatenated) and encoded as the
model requires: its tokenizer.json (an artifact's hash-checked copy) or UTF-8 bytes. Scoring is
`irgraph.heldout`: windows of --seq + 1 tokens, float64 log-softmax of the logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

import irgraph.runtimes
from irgraph.artifact import MANIFEST, read_listed
from irgraph.cli import progress
from irgraph.cli.common import weight_options
from irgraph.errors import ConfigError
from irgraph.heldout import score_windows, token_windows
from irgraph.text import text_files
from irgraph.tokenizer import check_tokenizer, model_vocab

TOKENIZER = "tokenizer.json"


@click.command("eval")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--corpus",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help="Held-out text: a text file or a folder (all text files below it); repeatable.",
)
@click.option(
    "--seq", type=click.IntRange(min=1), default=256, show_default=True, help="Tokens per window."
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Score about this many tokens, in windows spread evenly over the text (0 = all).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@weight_options
def eval_(
    path: str,
    corpus: tuple[str, ...],
    seq: int,
    max_tokens: int,
    batch_size: int,
    as_json: bool,
    cast_weights: bool,
    allow_nonfinite: bool,
) -> None:
    """Held-out bits per byte and perplexity of the graph or artifact at PATH on --corpus."""
    session = irgraph.runtimes.open(
        path, cast_weights=cast_weights, allow_nonfinite=allow_nonfinite
    )
    if "decoder_input_ids" in session.inputs:
        raise ConfigError("eval scores decoder-only language models", got="an encoder-decoder")
    vocab = model_vocab(session.bounds, session.meta)
    stream, n_bytes, tokenizer = _encode(Path(path), corpus, vocab)
    windows = token_windows(stream, seq, max_tokens)
    with progress.reporter() as report:
        score = score_windows(
            session.forward,
            windows,
            bytes_per_token=n_bytes / len(stream),
            batch=batch_size,
            progress=lambda done, total: report(done, total, "eval (windows)"),
        )
    result = {
        "bits_per_byte": score.bits_per_byte,
        "perplexity": score.perplexity,
        "loss": score.loss,
        "tokens": score.tokens,
        "windows": score.windows,
        "seq": seq,
        "bytes_per_token": score.bytes_per_token,
        "tokenizer": tokenizer,
    }
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(
        f"{score.bits_per_byte:.4f} bits/byte, perplexity {score.perplexity:.3f} per token "
        f"(loss {score.loss:.4f} nats; {score.tokens:,} tokens in {score.windows} windows of "
        f"{seq}; tokens: {tokenizer})"
    )


def _encode(
    folder: Path, corpus: tuple[str, ...], vocab: int | None
) -> tuple[np.ndarray, int, str]:
    """(token stream, its length in bytes, tokenizer name) of the corpus text."""
    if (folder / MANIFEST).is_file():  # an artifact: its own listed, hash-checked copy
        data = read_listed(folder, TOKENIZER)
    else:
        data = (folder / TOKENIZER).read_bytes() if (folder / TOKENIZER).is_file() else None
    texts = [f.read_bytes() for f in text_files(corpus)]
    n_bytes = sum(map(len, texts))
    if data is not None:
        from tokenizers import Tokenizer

        check_tokenizer(folder / TOKENIZER, vocab, data=data)
        tok = Tokenizer.from_str(data.decode("utf-8"))
        ids = [
            tok.encode(t.decode("utf-8", errors="replace"), add_special_tokens=False).ids
            for t in texts
        ]
        stream = np.concatenate([np.asarray(i, np.int64) for i in ids])
        return stream, n_bytes, TOKENIZER
    if vocab is not None and vocab < 256:
        raise ConfigError(
            "the model has no tokenizer.json and a vocabulary smaller than a byte",
            expected=">= 256 token ids for UTF-8 bytes",
            got=vocab,
            where=str(folder),
        )
    stream = np.frombuffer(b"".join(texts), np.uint8).astype(np.int64)
    return stream, n_bytes, "bytes"
