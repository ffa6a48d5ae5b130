"""A tokenizer whose ids exceed the model's vocabulary is refused by compile and generate."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import irgraph
from irgraph.cli import main
from irgraph.codegen.onnx import compile_graph
from irgraph.errors import ConfigError
from irgraph.tokenizer import check_tokenizer, max_token_id
from tests.helpers.handbuilt import tiny_llama

VOCAB = 64  # tiny_llama's


def word_tokenizer(path, size: int):
    """A word-level tokenizer.json with ids 0..size-1."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, size)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))
    return path


def test_check_tokenizer_names_both_numbers(tmp_path):
    big = word_tokenizer(tmp_path / "tokenizer.json", VOCAB + 6)
    assert max_token_id(big) == VOCAB + 5
    check_tokenizer(big, VOCAB + 6)
    check_tokenizer(big, None)  # a model that states no vocabulary: nothing to check
    with pytest.raises(
        ConfigError, match=r"vocabulary of 64 tokens .*expected ids 0..63, got ids up to 69"
    ):
        check_tokenizer(big, VOCAB)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the tokenizer"):
        max_token_id(tmp_path / "broken.json")


def test_compile_refuses_a_tokenizer_too_big_for_the_model(tmp_path):
    big = word_tokenizer(tmp_path / "tokenizer.json", VOCAB + 1)
    with pytest.raises(ConfigError, match="got ids up to 64"):
        compile_graph(tiny_llama(), tmp_path / "art", extra_files={"tokenizer.json": big})
    assert not (tmp_path / "art").exists()  # nothing half-written
    fits = word_tokenizer(tmp_path / "ok.json", VOCAB)
    compile_graph(tiny_llama(), tmp_path / "art", extra_files={"tokenizer.json": fits})
    assert json.loads((tmp_path / "art" / "manifest.json").read_text())["files"]["tokenizer.json"]


def test_generate_refuses_a_tokenizer_too_big_for_the_model(tmp_path):
    big = word_tokenizer(tmp_path / "tokenizer.json", VOCAB + 1)
    irgraph.save(tiny_llama(), tmp_path / "g", extra_files={"tokenizer.json": big})
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "g"), "--prompt", "w1 w2"])
    assert result.exit_code == 1, result.output
    assert "tokenizer's ids exceed the model's vocabulary of 64 tokens" in result.output
    assert "Traceback" not in result.output
    word_tokenizer(tmp_path / "g" / "tokenizer.json", VOCAB)  # one that fits
    result = CliRunner().invoke(
        main, ["generate", str(tmp_path / "g"), "--prompt", "w1", "-n", "2"]
    )
    assert result.exit_code == 0, result.output
