"""GGUF tokenizer keys: llama.cpp sizes its logits by the vocabulary, so every file carries one.

A carried tokenizer.json goes in through gguf-py's own readers (`gguf.vocab`): a byte-level
BPE (GPT-2 style: ByteLevel pre-tokenizer and decoder) as GGML type "gpt2" with its merges, a
SentencePiece-style BPE with byte fallback (LLaMA-2) as type "llama" with scores; special
tokens from `SpecialVocab`. `tokenizer.ggml.pre` names llama.cpp's pre-tokenizer regex and is
read from the tokenizer.json's pre-tokenizer (`PRE_TOKENIZERS`); one llama.cpp does not know
is refused by name rather than tokenized differently. A vocabulary smaller than the model's
token table is padded with unused placeholders (logits keep the table's width).

A graph without a tokenizer.json (zoo models, trained byte-level graphs) gets a byte
vocabulary of GGML type "llama" (SentencePiece): id b < 256 is the byte token `<0xBB>`
(type BYTE, so llama.cpp's byte fallback encodes any text as its UTF-8 bytes, as irgraph's
byte-level models read it), the ids above are unused placeholders.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from irgraph.errors import CodegenError
from irgraph.ir import Graph

# the GPT-2 pre-tokenizer regex, ByteLevel(use_regex=True)'s, and LLaMA-3's Split pattern
_LLAMA3 = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
PRE_TOKENIZERS = {  # what tokenizer.json's pre_tokenizer says -> tokenizer.ggml.pre
    "ByteLevel(use_regex)": "gpt-2",
    f"Split({_LLAMA3}),ByteLevel": "llama-bpe",
    "Metaspace": "default",  # SentencePiece-style: llama.cpp's SPM path has no regex
    "none": "default",
}


def byte_vocab(vocab: int) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and GGML token types of a `vocab`-row byte vocabulary."""
    import gguf

    tokens, scores, types = [], [], []
    for i in range(vocab):
        if i < 256:
            tokens.append(f"<0x{i:02X}>")
            types.append(int(gguf.TokenType.BYTE))
        else:
            tokens.append(f"<unused{i}>")
            types.append(int(gguf.TokenType.UNUSED))
        scores.append(0.0)
    return tokens, scores, types


def _pre_key(data: dict[str, Any]) -> str:
    """The PRE_TOKENIZERS key of a tokenizer.json's pre_tokenizer."""
    pre = data.get("pre_tokenizer") or {"type": "none"}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    keys = []
    for part in parts:
        kind = part.get("type")
        if kind == "ByteLevel":
            keys.append("ByteLevel(use_regex)" if part.get("use_regex", True) else "ByteLevel")
        elif kind == "Split":
            keys.append(f"Split({(part.get('pattern') or {}).get('Regex', '?')})")
        else:
            keys.append(str(kind))
    return ",".join(keys)


def _hf_vocab(tokenizer: Path, vocab: int) -> tuple[Any, str, Any]:
    """gguf-py's vocab reader for `tokenizer`, its `tokenizer.ggml.pre`, its special tokens."""
    import gguf

    data = json.loads(tokenizer.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    pre = PRE_TOKENIZERS.get(_pre_key(data))
    if pre is None:
        raise CodegenError(
            "tokenizer.json's pre-tokenizer has no llama.cpp equivalent here",
            expected=", ".join(PRE_TOKENIZERS),
            got=_pre_key(data)[:200],
            where=str(tokenizer),
        )
    with tempfile.TemporaryDirectory() as folder:  # gguf-py reads a folder's tokenizer.json
        shutil.copyfile(tokenizer, Path(folder) / "tokenizer.json")
        try:
            if model.get("type") == "BPE" and model.get("byte_fallback"):
                reader: Any = gguf.vocab.LlamaHfVocab(Path(folder))
            else:
                reader = gguf.vocab.BpeVocab(Path(folder))
        except (FileNotFoundError, TypeError, ValueError) as e:
            raise CodegenError(
                f"tokenizer.json is neither a byte-level nor a byte-fallback BPE ({e})",
                got=model.get("type"),
                where=str(tokenizer),
            ) from None
        special = gguf.vocab.SpecialVocab(Path(folder), load_merges=True, n_vocab=vocab)
    return reader, pre, special


def write_vocab(
    writer: Any, graph: Graph, vocab: int, tokenizer: Path | None = None
) -> dict[str, Any]:
    """Add the tokenizer keys for `graph`; returns what the manifest says about them."""
    if tokenizer is not None:
        import gguf

        reader, pre, special = _hf_vocab(tokenizer, vocab)
        tokens, scores, types = [], [], []
        for text, score, kind in reader.all_tokens():
            tokens.append(text)
            scores.append(float(score))
            types.append(int(kind))
        for i in range(len(tokens), vocab):
            tokens.append(f"[PAD{i}]".encode())
            scores.append(0.0)
            types.append(int(gguf.TokenType.UNUSED))
        writer.add_tokenizer_model(reader.tokenizer_model)
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens[:vocab])
        writer.add_token_scores(scores[:vocab])
        writer.add_token_types(types[:vocab])
        special.add_to_gguf(writer, quiet=True)
        return {"vocabulary": "tokenizer.json", "ggml_model": reader.tokenizer_model, "pre": pre}
    tokens, scores, types = byte_vocab(vocab)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    meta = graph.meta
    for key, add in (
        ("bos_token_id", writer.add_bos_token_id),
        ("eos_token_id", writer.add_eos_token_id),
        ("pad_token_id", writer.add_pad_token_id),
    ):
        value = meta.get(key)
        if isinstance(value, int) and 0 <= value < vocab:
            add(value)
    writer.add_add_bos_token(False)
    return {"vocabulary": "bytes", "ggml_model": "llama"}


__all__ = ["byte_vocab", "write_vocab"]
