"""The CLI skeleton through click's CliRunner: --help, inspect, run (full and --decode)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import irgraph
from irgraph.cli import main
from tests.helpers.handbuilt import HIDDEN, LAYERS, VOCAB, tiny_llama

IDS = [5, 17, 3, 60, 0, 42]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "llama"
    irgraph.save(tiny_llama(), path)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_every_verb():
    result = invoke("--help")
    assert result.exit_code == 0
    assert {"inspect", "run"} <= set(main.commands)
    for verb in main.commands:
        assert f"  {verb} " in result.output
        sub = invoke(verb, "--help")
        assert sub.exit_code == 0 and "Usage: main " + verb in sub.output.replace("irgraph", "main")


def test_inspect_text_and_stats(saved):
    result = invoke("inspect", saved)
    assert result.exit_code == 0, result.output
    assert result.output.startswith('graph "hand-llama" {\n')
    assert str(tiny_llama()) in result.output  # the whole text form, then the statistics
    assert "#   params            19,616 (19,616 active per token)" in result.output
    assert "#   KV cache/token    128 bytes (16-bit)" in result.output


def test_inspect_json(saved):
    result = invoke("inspect", saved, "--json", "--context", "16")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["name"] == "hand-llama" and stats["nodes"] == 41
    assert stats["params"] == 19616 and stats["kv_bytes_per_token"] == 128
    assert stats["prefill_flops_per_token"] == 36512 + 256 * 16 and stats["context"] == 16
    assert stats["outputs"][0] == "present.0.key" and "logits" in stats["outputs"]


def run_json(saved, *extra: str) -> np.ndarray:
    result = invoke("run", saved, "--ids", ",".join(map(str, IDS)), "--json", *extra)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert list(payload) == ["logits"]
    return np.asarray(payload["logits"])


def test_run_json_one_row_per_position(saved):
    logits = run_json(saved)
    assert logits.shape == (len(IDS), VOCAB)
    expected = irgraph.interpret(tiny_llama(), [IDS])[0]
    np.testing.assert_array_equal(
        logits, expected.astype(np.float64)
    )  # full precision, not rounded


def test_run_decode_matches_full(saved):
    full, decoded = run_json(saved), run_json(saved, "--decode")
    np.testing.assert_allclose(decoded, full, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(
        decoded[1:], np.repeat(decoded[:1], len(IDS) - 1, 0)
    )  # rows really differ


def test_interpreter_decode_matches_full_with_padding():
    graph = tiny_llama()
    assert LAYERS == 2 and HIDDEN == 32
    ids = np.array([[7, 8, 9, 10, 11], [1, 2, 3, 4, 5]])
    full = irgraph.interpret(graph, ids)
    np.testing.assert_allclose(
        irgraph.interpret(graph, ids, decode=True), full, rtol=1e-5, atol=1e-5
    )
    # A left-padded row gives the logits it would have alone.
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    padded = irgraph.interpret(graph, ids, mask=mask)
    alone = irgraph.interpret(graph, ids[:1, 2:])
    np.testing.assert_allclose(padded[0, 2:], alone[0], rtol=1e-5, atol=1e-5)


def test_run_text_output(saved):
    result = invoke("run", saved, "--ids", "1, 2,3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3 and lines[0].startswith("position 0: argmax ")
    expected = irgraph.interpret(tiny_llama(), [[1, 2, 3]])[0]
    assert [int(line.split()[3]) for line in lines] == list(expected.argmax(-1))


@pytest.mark.parametrize(
    "ids,message",
    [
        ("1,x,3", "item 2 of '1,x,3' is 'x', not an integer (expected comma-separated integers)"),
        ("1,,2", "item 2 of '1,,2' is empty"),
        ("1,2,", "item 3 of '1,2,' is empty"),
        (",", "item 1 of ',' is empty"),
        ("", "expected at least one token id"),
        ("1.5", "item 1 of '1.5' is '1.5', not an integer"),
        ("1,64", "token id 64 is out of range"),
        ("-1", "token id -1 is out of range"),
    ],
)
def test_bad_ids_give_a_clean_error(saved, ids, message):
    result = CliRunner().invoke(main, ["run", str(saved), "--ids", ids])
    assert result.exit_code == 2, result.output
    assert "--ids" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # click's usage error, not a crash


def test_out_of_range_ids_without_vocab_meta(tmp_path):
    graph = tiny_llama()
    graph.meta.clear()  # the bound comes off the embedding table
    irgraph.save(graph, tmp_path / "g")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "g"), "--ids", "3,64"])
    assert result.exit_code == 2
    assert "token id 64 is out of range (expected 0..63)" in result.output


def test_options_the_model_does_not_take(saved):
    result = CliRunner().invoke(main, ["run", str(saved), "--ids", "1", "--decoder-ids", "2"])
    assert result.exit_code == 2 and "only encoder-decoder models take decoder ids" in result.output
    result = CliRunner().invoke(main, ["run", str(saved), "--ids", "1", "--prefix-len", "1"])
    assert result.exit_code == 2 and "only prefix-LM models take a prefix length" in result.output


def test_not_a_graph_folder(tmp_path):
    result = CliRunner().invoke(main, ["run", str(tmp_path), "--ids", "1"])
    assert result.exit_code == 1 and f"Error: {tmp_path}: not a saved graph" in result.output
    result = CliRunner().invoke(main, ["inspect", str(tmp_path)])
    assert result.exit_code == 1 and "no graph.irg" in result.output
