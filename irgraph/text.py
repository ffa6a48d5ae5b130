"""Text for language models: corpus files, tokenizers and the held-out split (no torch).

    files = text_files(["corpus/"])          # every text file named or below, sorted
    tok = JsonTokenizer("m/tokenizer.json")  # or ByteTokenizer(): UTF-8 bytes as ids 0..255
    corpus = load_corpus(["corpus/"], tok)   # train / held-out token streams

Zoo models read bytes as tokens (UTF-8 bytes, vocabulary 256); imported models use their
`tokenizer.json` through the `tokenizers` library. The held-out set is whole files, chosen by
a hash of each file's path, so no held-out text is ever trained on. `train`, `--calibration`
and `eval` all read text through this module, so the ones that never train (calibration and
eval on ONNX, TVM or the interpreter) do not load torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from irgraph.errors import ConfigError

_SNIFF = 8192  # bytes read to decide whether a file is text


class Tokenizer(Protocol):
    name: str
    vocab_size: int

    def encode(self, data: bytes) -> list[int] | np.ndarray: ...


class ByteTokenizer:
    """Bytes as tokens: id = byte value (0..255)."""

    name = "bytes"
    vocab_size = 256

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8)


class JsonTokenizer:
    """A Hugging Face `tokenizer.json` through the `tokenizers` library.

    BPE, WordPiece and Unigram models.
    """

    def __init__(self, path: str | os.PathLike[str]):
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as e:  # the library raises plain Exceptions for unreadable files
            raise ConfigError(f"cannot read tokenizer: {e}", where=str(path)) from None
        self.name = f"tokenizer.json ({Path(path).parent.name})"
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, data: bytes) -> list[int]:
        return self._tok.encode(
            data.decode("utf-8", errors="replace"), add_special_tokens=False
        ).ids


def text_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Every text file named or below the folders named, sorted; ConfigError when there are none."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(f for f in sorted(p.rglob("*")) if f.is_file() and _is_text(f))
        else:
            raise ConfigError("corpus path does not exist", where=str(p))
    if not found:
        raise ConfigError(
            "the corpus has no text files", got=[str(p) for p in paths], where="--corpus"
        )
    return sorted(set(found))


def _is_text(path: Path) -> bool:
    try:
        head = path.read_bytes()[:_SNIFF]
    except OSError:
        return False
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(head) - 4  # a character cut by the sniff window is still text
    return True


def is_heldout(path: Path, fraction: float, seed: int) -> bool:
    """Stable choice of held-out files: a hash of the path (and seed) below `fraction`."""
    digest = hashlib.sha256(f"{seed}:{path.as_posix()}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < fraction


@dataclass
class Corpus:
    """Token streams (files concatenated) for training and held-out evaluation."""

    train: np.ndarray
    heldout: np.ndarray
    train_files: int
    heldout_files: int
    heldout_bytes: int
    tokenizer: str

    @property
    def bytes_per_token(self) -> float:
        return self.heldout_bytes / max(len(self.heldout), 1)


def load_corpus(
    paths: Sequence[str | os.PathLike[str]],
    tokenizer: Tokenizer,
    *,
    heldout_fraction: float = 0.05,
    seed: int = 0,
    vocab_size: int | None = None,
    base: str | os.PathLike[str] | None = None,
) -> Corpus:
    """Read and tokenise the text files under `paths`; split off held-out files.

    The split hashes each file's path relative to `base` (default: the folder
    it was found under), so it does not depend on where the corpus lives.
    With a single file, its last `heldout_fraction` is held out instead.
    """
    files = text_files(paths)
    roots = [Path(base)] if base is not None else [Path(p) for p in paths]
    train, held, n_held, held_bytes = [], [], 0, 0
    for f in files:
        rel = next((f.relative_to(r) for r in roots if r.is_dir() and f.is_relative_to(r)), f)
        data = f.read_bytes()
        tokens = np.asarray(tokenizer.encode(data), dtype=np.int32)
        if len(files) > 1 and is_heldout(rel, heldout_fraction, seed):
            held.append(tokens)
            n_held += 1
            held_bytes += len(data)
        else:
            train.append(tokens)
    if not held:  # too few files to hold one out: hold out the tail of the text instead
        stream = np.concatenate(train)
        cut = len(stream) - max(1, int(len(stream) * heldout_fraction))
        train, held = [stream[:cut]], [stream[cut:]]
        held_bytes = int(round(len(held[0]) * _bytes_per_token(files, stream)))
    corpus = Corpus(
        np.concatenate(train),
        np.concatenate(held),
        len(files) - n_held,
        n_held,
        held_bytes,
        tokenizer.name,
    )
    limit = vocab_size if vocab_size is not None else tokenizer.vocab_size
    top = int(max(corpus.train.max(initial=0), corpus.heldout.max(initial=0)))
    if top >= limit:
        raise ConfigError(
            "the tokenizer produces ids outside the model's vocabulary",
            expected=f"< {limit}",
            got=top,
            where="--corpus",
        )
    return corpus


def _bytes_per_token(files: Iterable[Path], stream: np.ndarray) -> float:
    return sum(f.stat().st_size for f in files) / max(len(stream), 1)
