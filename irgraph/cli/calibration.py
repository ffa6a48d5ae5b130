"""`--calibration PATH` and friends: windows of real text, as token ids, for data-driven passes.

    irgraph opt ref/ --passes "quantize(method=gptq)" --calibration corpus/ -o ref-q4

PATH is a text file or a folder (every text file below it), as for `train --corpus`; the option
repeats. The text is encoded as the graph's vocabulary requires: with the graph's own
`tokenizer.json` when it has one, else as UTF-8 bytes (zoo and byte-level models). The files
are concatenated in path order and `--calibration-samples` windows of `--calibration-seq`
tokens are cut at random offsets drawn from `--calibration-seed`, in batches of BATCH rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from irgraph.errors import ConfigError
from irgraph.text import ByteTokenizer, JsonTokenizer, text_files

BATCH = 8  # windows per calibration batch (one interpreter run each)


@dataclass(frozen=True)
class Calibration:
    """The calibration options as given on the command line."""

    paths: tuple[str, ...] = ()
    samples: int = 128
    seq: int = 512
    seed: int = 0

    def batches(self, tokenizer: Path | None, vocab: int | None) -> list[np.ndarray]:
        """int64 [rows, seq] token-id batches; [] without --calibration."""
        if not self.paths:
            return []
        stream = _encode(self.paths, tokenizer, vocab)
        if len(stream) < self.seq:
            raise ConfigError(
                "the calibration text is shorter than one window",
                expected=f">= {self.seq} tokens (or a smaller --calibration-seq)",
                got=f"{len(stream)} tokens",
                where="--calibration",
            )
        rng = np.random.default_rng(self.seed)
        starts = rng.integers(0, len(stream) - self.seq + 1, size=self.samples)
        windows = np.stack([stream[s : s + self.seq] for s in starts]).astype(np.int64)
        return [windows[i : i + BATCH] for i in range(0, len(windows), BATCH)]


def _encode(paths: tuple[str, ...], tokenizer: Path | None, vocab: int | None) -> np.ndarray:
    tok = JsonTokenizer(tokenizer) if tokenizer is not None else ByteTokenizer()
    files: list[Path] = []
    for p in paths:
        try:
            found = text_files([p])
        except ConfigError:
            found = []
        if not found or not any(f.stat().st_size for f in found):
            raise ConfigError(
                "the calibration path has no text",
                expected="a text file or a folder of them",
                where=f"--calibration {p}",
            )
        files += found
    tokens = [np.asarray(tok.encode(f.read_bytes()), np.int64) for f in sorted(set(files))]
    stream = np.concatenate(tokens)
    top = int(stream.max(initial=0))
    if vocab is not None and top >= vocab:
        raise ConfigError(
            f"the calibration text encodes ({tok.name}) to ids outside the model's vocabulary",
            expected=f"ids < {vocab}",
            got=f"id {top}",
            where="--calibration",
        )
    return stream


def calibration_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add --calibration (repeatable), --calibration-samples, --calibration-seq, -seed."""
    options = [
        click.option(
            "--calibration",
            multiple=True,
            type=click.Path(exists=True),
            help="Calibration text for data-driven passes (quantize(method=gptq)): a text file "
            "or a folder of them, as `train --corpus`; repeatable.",
        ),
        click.option(
            "--calibration-samples",
            type=click.IntRange(min=1),
            default=128,
            show_default=True,
            help="Calibration windows.",
        ),
        click.option(
            "--calibration-seq",
            type=click.IntRange(min=1),
            default=512,
            show_default=True,
            help="Tokens per calibration window.",
        ),
        click.option(
            "--calibration-seed",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Seed of the window offsets.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def from_options(options: dict[str, Any]) -> Calibration:
    """Pop the calibration options out of a command's keyword arguments."""
    return Calibration(
        tuple(options.pop("calibration")),
        options.pop("calibration_samples"),
        options.pop("calibration_seq"),
        options.pop("calibration_seed"),
    )
