"""GGUF tokenizer keys: llama.cpp sizes its logits by the vocabulary, so every file carries one.

A graph without a tokenizer.json (zoo models, trained byte-level graphs) gets a byte
vocabulary of GGML type "llama" (SentencePiece): id b < 256 is the byte token `<0xBB>`
(type BYTE, so llama.cpp's byte fallback encodes any text as its UTF-8 bytes, as irgraph's
byte-level models read it), the ids above are unused placeholders.
"""

from __future__ import annotations

from typing import Any

from irgraph.ir import Graph


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


def write_vocab(writer: Any, graph: Graph, vocab: int) -> dict[str, Any]:
    """Add the tokenizer keys for `graph`; returns what the manifest says about them."""
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
