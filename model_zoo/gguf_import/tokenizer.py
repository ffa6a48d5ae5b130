"""GGUF tokenizer keys -> tokenizer.json, where the file says enough to rebuild it exactly.

The inverse of `codegen/gguf/vocab.py`, case by case:

    tokenizer.huggingface.json    the file carries the tokenizer.json itself: written as is
    byte vocabulary               irgraph's own (ids 0..255 the tokens <0x00>..<0xFF> of type
                                  BYTE, every other id UNUSED): irgraph reads text as UTF-8
                                  bytes without a tokenizer.json, so none is written
    "gpt2", pre gpt-2 / llama-bpe a byte-level BPE: vocabulary, merges, the pre-tokenizer regex
                                  llama.cpp names by `tokenizer.ggml.pre`, byte-level decoder,
                                  control / user-defined tokens as added tokens, BOS prepended
                                  where `add_bos_token` says so; what llama.cpp tokenizes with
    anything else                 not rebuilt (SentencePiece "llama" vocabularies: their
                                  normalizer and merge rules are not in the file), and the
                                  reason is returned for the command to print

The placeholder rows the writer pads a short vocabulary with (`[PAD{i}]`, UNUSED, at the end)
are not tokens of the tokenizer and are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from irgraph.bpe_json import added_token, bpe_json

# tokenizer.ggml.pre -> the tokenizer.json pre_tokenizer vocab.py reads it from
_LLAMA3 = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
PRE_TOKENIZERS: dict[str, dict[str, Any]] = {
    "gpt-2": {**_BYTE_LEVEL, "use_regex": True},
    "llama-bpe": {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": _LLAMA3},
                "behavior": "Isolated",
                "invert": False,
            },
            {**_BYTE_LEVEL, "use_regex": False},
        ],
    },
}
NORMAL, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 3, 4, 5, 6  # gguf.TokenType


@dataclass(frozen=True)
class Vocabulary:
    """What the import carries: a tokenizer.json text (or None), and a line saying what it is."""

    json: str | None
    note: str


def _is_byte_vocab(tokens: list[str], types: list[int]) -> bool:
    return (
        len(tokens) >= 256
        and all(tokens[i] == f"<0x{i:02X}>" and types[i] == BYTE for i in range(256))
        and all(t == UNUSED for t in types[256:])
    )


def _prepend(token: str, token_id: int) -> dict[str, Any]:
    """A post-processor adding BOS before every text (llama.cpp's add_bos_token)."""
    bos = {"SpecialToken": {"id": token, "type_id": 0}}
    return {
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            bos,
            {"Sequence": {"id": "A", "type_id": 0}},
            bos,
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {token: {"id": token, "ids": [token_id], "tokens": [token]}},
    }


def _byte_level_bpe(meta: Mapping[str, Any], tokens: list[str], types: list[int]) -> str:
    n = len(tokens)
    while n and types[n - 1] == UNUSED and tokens[n - 1] == f"[PAD{n - 1}]":
        n -= 1  # the writer's padding rows
    added = [
        added_token(i, tokens[i], special=types[i] == CONTROL, normalized=types[i] == USER_DEFINED)
        for i in range(n)
        if types[i] in (CONTROL, USER_DEFINED)
    ]
    merges = [m.split(" ", 1) for m in meta.get("tokenizer.ggml.merges") or []]
    post: dict[str, Any] = {**_BYTE_LEVEL, "use_regex": True}
    bos = meta.get("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token") is True and isinstance(bos, int) and 0 <= bos < n:
        post = {"type": "Sequence", "processors": [post, _prepend(tokens[bos], bos)]}
    return bpe_json(
        {tokens[i]: i for i in range(n)},
        merges,
        added=added,
        pre_tokenizer=PRE_TOKENIZERS[meta["tokenizer.ggml.pre"]],
        post_processor=post,
        decoder={**_BYTE_LEVEL, "use_regex": True},
    )


def vocabulary(meta: Mapping[str, Any]) -> Vocabulary:
    """The tokenizer.json the file's tokenizer keys rebuild exactly, or why none is written."""
    carried = meta.get("tokenizer.huggingface.json")
    if isinstance(carried, str):
        return Vocabulary(carried, "tokenizer.json: carried in the file, as is")
    model, pre = meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.pre", "default")
    tokens, types = meta.get("tokenizer.ggml.tokens"), meta.get("tokenizer.ggml.token_type")
    if model is None or not isinstance(tokens, list):
        return Vocabulary(None, "no tokenizer in the file: none written")
    if not isinstance(types, list) or len(types) != len(tokens):
        types = [NORMAL] * len(tokens)
    if model == "llama" and _is_byte_vocab(tokens, types):
        return Vocabulary(
            None, "byte vocabulary (irgraph's): read as UTF-8 bytes, no tokenizer.json"
        )
    if model == "gpt2" and pre in PRE_TOKENIZERS:
        return Vocabulary(
            _byte_level_bpe(meta, tokens, types),
            f"tokenizer.json: byte-level BPE rebuilt ({len(tokens)} tokens, pre-tokenizer {pre})",
        )
    return Vocabulary(
        None,
        f"tokenizer NOT carried: a {model!r} vocabulary (pre-tokenizer {pre!r}) cannot be "
        "rebuilt as tokenizer.json exactly from GGUF keys; the graph reads token ids only",
    )


def token_ids(meta: Mapping[str, Any], vocab: int) -> dict[str, int | None]:
    """bos / eos / pad ids as the file states them (None where it states none or one past vocab)."""
    ids: dict[str, int | None] = {}
    for key, gguf_key in (
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ):
        value = meta.get(gguf_key)
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < vocab
        ids[key] = value if ok else None
    return ids


__all__ = ["PRE_TOKENIZERS", "Vocabulary", "token_ids", "vocabulary"]
