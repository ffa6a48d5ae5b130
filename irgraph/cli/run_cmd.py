"""`irgraph run PATH --ids 1,2,3`: logits for token ids, prefill or cached decode."""

from __future__ import annotations

import json

import click
import numpy as np

import irgraph.runtimes
from irgraph.cli.common import checked_domain, domain_option, parse_ids, weight_options
from irgraph.tokenizer import model_vocab


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--ids",
    required=True,
    help="Comma-separated token ids (the encoder input for encoder-decoders).",
)
@click.option("--decode", is_flag=True, help="Feed the tokens one at a time through the KV cache.")
@click.option(
    "--decoder-ids",
    help="Encoder-decoder models: decoder input ids (default: the decoder start token).",
)
@click.option(
    "--prefix-len",
    type=click.IntRange(min=0),
    help="Prefix-LM models: bidirectional prefix length (default: all of --ids).",
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"logits": [[...], ...]}, one row per position.'
)
@domain_option
@weight_options
def run(
    path: str,
    ids: str,
    decode: bool,
    decoder_ids: str | None,
    prefix_len: int | None,
    as_json: bool,
    domain: int | None,
    cast_weights: bool,
    allow_nonfinite: bool,
) -> None:
    """Run the model at PATH (saved graph or compiled artifact) on token ids and print logits."""
    session = irgraph.runtimes.open(
        path, cast_weights=cast_weights, allow_nonfinite=allow_nonfinite
    )
    vocab = model_vocab(session.bounds, session.meta)
    tokens = np.asarray([parse_ids(ids, "--ids", vocab)], dtype=np.int64)
    kw: dict[str, np.ndarray] = {}
    if "decoder_input_ids" in session.inputs:
        start = session.meta.get("decoder_start_token_id", 0)
        dec = parse_ids(decoder_ids, "--decoder-ids", vocab) if decoder_ids else [int(start)]
        kw["encoder_ids"] = tokens
        tokens = np.asarray([dec], dtype=np.int64)
    elif decoder_ids:
        raise click.BadParameter(
            "only encoder-decoder models take decoder ids", param_hint="--decoder-ids"
        )
    if "prefix_len" in session.inputs:
        kw["prefix_len"] = np.asarray([tokens.shape[1] if prefix_len is None else prefix_len])
    elif prefix_len is not None:
        raise click.BadParameter(
            "only prefix-LM models take a prefix length", param_hint="--prefix-len"
        )
    logits = session.forward(tokens, decode=decode, **kw, **checked_domain(session, domain))[0]
    if as_json:
        click.echo(json.dumps({"logits": [[float(x) for x in row] for row in logits]}))
        return
    for i, row in enumerate(logits):
        top = np.argsort(-row)[:5]
        click.echo(
            f"position {i}: argmax {int(top[0])}  top5 "
            f"{', '.join(f'{t}:{row[t]:.4f}' for t in top)}"
        )
