"""Every session refuses what the interpreter refuses (issue 12, "No garbage").

One tiny learned-position model (vocab 32, 8 positions), compiled once per module for ONNX
and tvm-llvm; each bad feed is tried on the interpreter and both artifacts, through `run`,
`step`, `forward` and `generate`, and must raise InputError naming the input.
"""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.runtimes
from irgraph import lm, model_zoo
from irgraph.errors import ConfigError, InputError, RuntimeFailure
from irgraph.feeds import bounds_from_manifest, context_limit, index_bounds
from irgraph.runtimes.interpreter import InterpreterSession

VOCAB, POSITIONS = 32, 8


def tiny_learned():
    cfg = model_zoo.config("gpt-3", "tiny").replace(
        name="learned",
        vocab_size=VOCAB,
        hidden=16,
        layers=1,
        heads=2,
        ffn=32,
        max_position=POSITIONS,
    )
    return model_zoo.build_graph(cfg, weights="random", seed=0)


@pytest.fixture(scope="module")
def graph():
    return tiny_learned()


@pytest.fixture(scope="module")
def sessions(graph, tmp_path_factory):
    from irgraph.codegen.onnx import compile_graph as onnx_compile
    from irgraph.codegen.tvm.artifact import compile_graph as tvm_compile

    root = tmp_path_factory.mktemp("validation")
    onnx_compile(graph, root / "onnx")
    tvm_compile(graph, root / "tvm", target="tvm-llvm")
    return {
        "interpreter": InterpreterSession(graph),
        "onnx": irgraph.runtimes.open(root / "onnx"),
        "tvm-llvm": irgraph.runtimes.open(root / "tvm"),
    }


BACKENDS = ("interpreter", "onnx", "tvm-llvm")


def test_index_bounds_come_from_the_embedding_tables(graph):
    assert index_bounds(graph) == {"input_ids": VOCAB, "position_ids": POSITIONS}
    assert context_limit(index_bounds(graph)) == POSITIONS
    rotary = model_zoo.build("llama")
    assert set(index_bounds(rotary)) == {"input_ids"}  # rotary positions have no table
    assert context_limit(index_bounds(rotary)) is None


def test_artifacts_record_the_bounds(sessions):
    for name in ("onnx", "tvm-llvm"):
        assert sessions[name].manifest["input_bounds"] == {
            "input_ids": VOCAB,
            "position_ids": POSITIONS,
        }
    old = {"inputs": [{"name": "input_ids"}], "meta": {"vocab_size": 50}}  # before input_bounds
    assert bounds_from_manifest(old) == {"input_ids": 50}


@pytest.mark.parametrize("backend", BACKENDS)
def test_good_feeds_still_match_the_interpreter(sessions, graph, backend):
    ids = np.array([[3, VOCAB - 1, 0, 7]])
    np.testing.assert_allclose(
        sessions[backend].forward(ids, decode=True), lm.interpret(graph, ids), atol=1e-4
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "ids,message",
    [
        (
            [[1, VOCAB]],
            rf"input 'input_ids': id out of range \(expected 0..{VOCAB - 1}, got {VOCAB}\)",
        ),
        ([[-1, 2]], r"input 'input_ids': id out of range \(expected 0..31, got -1\)"),
        ([[1] * (POSITIONS + 1)], rf"past \+ new tokens \({POSITIONS + 1}\) exceed .* {POSITIONS}"),
    ],
)
def test_forward_refuses_bad_ids(sessions, backend, ids, message):
    for decode in (False, True):
        with pytest.raises(InputError, match=message):
            sessions[backend].forward(ids, decode=decode)


def feeds(session, ids, past=0, **override):
    ids = np.asarray(ids, dtype=np.int64)
    cache = lm.empty_cache(session.inputs, ids.shape[0])
    if past:
        cache = {n: np.zeros((*a.shape[:2], past, a.shape[3]), a.dtype) for n, a in cache.items()}
    return {**lm.make_feeds(session.inputs, ids, cache, past_len=past), **override}


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_and_step_refuse_bad_feeds(sessions, backend):
    session = sessions[backend]
    bad = {
        r"position_ids': position out of range \(expected 0..7, got 8\)": feeds(
            session, [[1, 2]], position_ids=np.array([[0, POSITIONS]])
        ),
        r"position_ids': position out of range \(expected 0..7, got -1\)": feeds(
            session, [[1, 2]], position_ids=np.array([[-1, 0]])
        ),
        r"input 'input_ids' has the wrong dtype \(expected integers": feeds(
            session, [[1, 2]], input_ids=np.array([[1.0, 2.0]])
        ),
        r"input 'input_ids' has the wrong rank": feeds(
            session, [[1, 2]], input_ids=np.array([1, 2])
        ),
        r"dim batch is 1 here but 2 elsewhere|dim batch is 2 here but 1 elsewhere": feeds(
            session, [[1, 2]], attention_mask=np.ones((2, 2), np.int64)
        ),
        r"attention_mask' must hold 0s and 1s": feeds(
            session, [[1, 2]], attention_mask=np.array([[1, 7]])
        ),
        r"missing inputs: position_ids": {
            k: v for k, v in feeds(session, [[1, 2]]).items() if k != "position_ids"
        },
        r"unknown inputs: extra": feeds(session, [[1, 2]], extra=np.zeros(1)),
        # a cache of 3 positions but a mask covering 2 past + 2 new tokens
        r"past_key_values.0.key|dim past\+seq should be 5": feeds(
            session, [[1, 2]], past=3, attention_mask=np.ones((1, 4), np.int64)
        ),
        r"past \+ new tokens \(9\) exceed": feeds(session, [[1, 2]], past=7),
    }
    for message, bad_feeds in bad.items():
        for call in (session.run, session.step):
            with pytest.raises(InputError, match=message):
                call(bad_feeds)


@pytest.mark.parametrize("backend", BACKENDS)
def test_generate_refuses_to_run_past_the_position_table(sessions, backend):
    session = sessions[backend]
    assert len(session.generate([[1, 2, 3]], POSITIONS - 2)[0]) == POSITIONS - 2  # fits exactly
    with pytest.raises(InputError, match=r"3 tokens plus 7 new tokens runs past .* 8 positions"):
        session.generate([[1, 2, 3]], POSITIONS - 1)
    with pytest.raises(InputError, match=rf"id out of range \(expected 0..31, got {VOCAB}\)"):
        session.generate([[1, VOCAB]], 2)


def test_tvm_refuses_replacement_weights_of_another_dtype(sessions, graph):
    from irgraph.runtimes.tvm import TVMSession

    folder = sessions["tvm-llvm"].folder
    weights = {n: np.asarray(graph.weight(n)) for n in graph.params}
    weights["embed.weight"] = weights["embed.weight"].astype(np.float16)
    with pytest.raises(RuntimeFailure, match="weight 'embed.weight' has the wrong dtype"):
        TVMSession(folder, weights=weights)


def test_casting_weights_is_refused_for_an_artifact(sessions):
    with pytest.raises(ConfigError, match="casting weights applies to saved graphs"):
        irgraph.runtimes.open(sessions["onnx"].folder, cast_weights=True)


def test_onnxruntime_failures_at_run_time_are_one_line(sessions, monkeypatch):
    class Failing:
        def run(self, *args):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : boom\nmore detail")

    session = sessions["onnx"]
    monkeypatch.setattr(session, "session", Failing())
    with pytest.raises(RuntimeFailure, match=r"onnxruntime failed: \[ONNXRuntimeError\].*boom$"):
        session.forward([[1, 2]])


def test_forward_needs_a_logits_output(graph):
    from irgraph.errors import IRError

    session = InterpreterSession(graph)
    session.graph = tiny_learned()
    session.graph.outputs = {"hidden": session.graph.outputs["logits"]}
    with pytest.raises(IRError, match=r"no logits output .*expected logits, got hidden"):
        session.forward([[1, 2]])


@pytest.mark.parametrize("backend", ["onnx", "tvm-llvm"])
def test_the_cli_refuses_with_one_line_where_tvm_gave_garbage(sessions, backend):
    from click.testing import CliRunner

    from irgraph.cli import main

    folder = str(sessions[backend].folder)
    too_long = ",".join(["1"] * (POSITIONS + 1))
    for args, message in (
        (["run", folder, "--ids", too_long], "past + new tokens (9) exceed the model's context"),
        (["run", folder, "--ids", f"1,{VOCAB}"], f"token id {VOCAB} is out of range"),
        (["generate", folder, "--prompt-ids", "1,2,3", "-n", "7"], "runs past the model's"),
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code in (1, 2) and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
