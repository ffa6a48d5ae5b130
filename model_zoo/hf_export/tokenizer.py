"""The tokenizer an exported checkpoint carries: the graph folder's own, or irgraph's bytes.

A graph imported from a checkpoint keeps its tokenizer.json (and, where it was copied in,
tokenizer_config.json / special_tokens_map.json): those go out unchanged, with a minimal
tokenizer_config.json added when there is none, so `AutoTokenizer.from_pretrained` opens
the folder. A graph without one reads UTF-8 bytes as token ids (zoo models, models trained
here, `irgraph.text.ByteTokenizer`); it gets a tokenizer.json that encodes exactly that: a
BPE over 256 single-byte tokens (GPT-2's byte-to-character alphabet, ByteLevel pre-tokenizer
without regex and prefix space, ByteLevel decoder), no merges, no normalizer and no BOS
added, so `encode(text) == list(text.encode("utf-8"))`. Ids past 255 become `<unused{i}>`
special tokens, so the vocabulary covers the model's token table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from irgraph.bpe_json import added_token, bpe_json, byte_level

COPIED = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
BYTES = 256


@dataclass(frozen=True)
class TokenizerFiles:
    files: dict[str, str]  # file name -> text to write
    copied: tuple[str, ...]  # which of `files` came from the graph folder
    note: str  # what was written, for the command's output


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-in character of each byte value (its `bytes_to_unicode`)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    chars, extra = {}, 0
    for b in range(BYTES):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(BYTES + extra)
            extra += 1
    return [chars[b] for b in range(BYTES)]


def byte_tokenizer_json(vocab: int) -> str:
    """tokenizer.json text of irgraph's byte vocabulary for a `vocab`-row token table."""
    alphabet = _byte_alphabet()
    added = [
        added_token(i, f"<unused{i}>", special=True, normalized=False) for i in range(BYTES, vocab)
    ]
    stage = byte_level(use_regex=False, trim_offsets=False)
    return bpe_json(
        {c: b for b, c in enumerate(alphabet)},
        [],
        added=added,
        pre_tokenizer=stage,
        post_processor=None,
        decoder=stage,
        indent=1,
    )


def _config(max_length: int) -> str:
    return json.dumps(
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": max_length,
            "clean_up_tokenization_spaces": False,
        },
        indent=2,
    )


def tokenizer_files(folder: Path | None, vocab: int, max_length: int) -> TokenizerFiles:
    """The tokenizer files for a graph saved in `folder` (None: a graph held in memory)."""
    found = {n: (folder / n) for n in COPIED if folder is not None and (folder / n).is_file()}
    if "tokenizer.json" in found:
        files = {n: p.read_text(encoding="utf-8") for n, p in found.items()}
        note = f"tokenizer: copied {', '.join(sorted(found))} from the graph folder"
        if "tokenizer_config.json" not in files:
            files["tokenizer_config.json"] = _config(max_length)
            note += " (tokenizer_config.json written: PreTrainedTokenizerFast)"
        return TokenizerFiles(files, tuple(sorted(found)), note)
    if vocab < BYTES:
        return TokenizerFiles(
            {}, (), f"tokenizer: none written (no tokenizer.json, and {vocab} ids hold no bytes)"
        )
    return TokenizerFiles(
        {
            "tokenizer.json": byte_tokenizer_json(vocab),
            "tokenizer_config.json": _config(max_length),
        },
        (),
        "tokenizer: irgraph's byte vocabulary (id = UTF-8 byte value) written as a byte-level "
        "BPE tokenizer.json without merges"
        + (f"; ids {BYTES}..{vocab - 1} as <unused{{i}}> tokens" if vocab > BYTES else ""),
    )
