"""ONNX artifacts at run time: manifest checks, generate (padding, sampling, stops, streaming), CLI.

genai runs them too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import irgraph.runtimes
from irgraph import lm
from irgraph.cli import main
from irgraph.codegen.onnx import compile_graph
from irgraph.errors import ConfigError, RuntimeFailure
from irgraph.runtimes.interpreter import InterpreterSession
from irgraph.runtimes.onnx import ORTSession
from irgraph.serialize import save
from tests.helpers.handbuilt import tiny_llama

PROMPTS = [[1, 5, 9, 3, 7], [2, 4], [6, 6, 6]]


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


@pytest.fixture(scope="module")
def artifacts(llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    return {f: compile_graph(llama, root / f, flavour=f) for f in ("ort", "portable")}


def test_manifest_describes_the_artifact(artifacts):
    manifest = json.loads((artifacts["ort"] / "manifest.json").read_text())
    assert manifest["format"] == "irgraph-artifact" and manifest["target"] == "onnx"
    assert manifest["inputs"][0] == {"name": "input_ids", "dtype": "i64", "shape": ["batch", "seq"]}
    assert manifest["kv_cache"]["past"][:2] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert set(manifest["files"]) == {
        "graph.irg",
        "model.onnx",
        "model_last.onnx",
        "model.onnx.data",
        "genai_config.json",
    }
    assert manifest["tools"]["onnxruntime"] and manifest["requires"]["onnxruntime"]
    assert manifest["left_padding"] is False  # GroupQueryAttention
    assert (artifacts["ort"] / "graph.irg").read_text().startswith("graph")


@pytest.mark.parametrize("victim", ["model.onnx.data", "graph.irg"])
def test_tampered_file_is_refused_by_name(artifacts, tmp_path, victim):
    import shutil

    copy = shutil.copytree(artifacts["ort"], tmp_path / "copy")
    with open(copy / victim, "r+b") as f:
        f.seek(100)
        f.write(b"\x01\x02\x03")
    with pytest.raises(RuntimeFailure, match=rf"{victim} does not match its sha256"):
        irgraph.runtimes.open(copy)


def test_manifest_version_and_tool_checks(artifacts, tmp_path):
    import shutil

    for key, value, message in (
        ("format_version", 99, "unsupported artifact format"),
        ("requires", {"onnxruntime": "99.0"}, "needs onnxruntime >= 99.0"),
    ):
        copy = shutil.copytree(artifacts["ort"], tmp_path / key)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest[key] = value
        (copy / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(RuntimeFailure, match=message):
            ORTSession(copy)


def test_existing_output_needs_force(llama, artifacts):
    with pytest.raises(ConfigError, match="not empty .an irgraph output.; pass force=True"):
        compile_graph(llama, artifacts["ort"])
    assert compile_graph(llama, artifacts["ort"], force=True) == artifacts["ort"]


@pytest.mark.parametrize("flavour", ["ort", "portable"])
def test_generate_matches_interpreter(llama, artifacts, flavour):
    session, ref = ORTSession(artifacts[flavour]), InterpreterSession(llama)
    greedy = ref.generate(PROMPTS, 6)
    for prompt, tokens in zip(
        PROMPTS, greedy
    ):  # the padded batch equals each prompt alone, recomputed
        seq = list(prompt)
        for _ in range(6):
            seq.append(int(np.argmax(lm.interpret(llama, [seq])[0, -1])))
        assert seq[len(prompt) :] == tokens
    assert session.generate(PROMPTS, 6) == greedy
    sampled = dict(temperature=0.9, top_k=5, top_p=0.9, seed=3)
    assert session.generate(PROMPTS, 6, **sampled) == ref.generate(PROMPTS, 6, **sampled)
    assert session.generate(PROMPTS, 6, **sampled) != session.generate(
        PROMPTS, 6, **{**sampled, "seed": 4}
    )


def test_stop_ids_and_streaming(artifacts):
    session = ORTSession(artifacts["ort"])
    full = session.generate(PROMPTS, 6)
    stop = full[0][2]
    stopped = session.generate(PROMPTS, 6, stop_ids=[stop])
    for row, out in zip(full, stopped):
        assert out == (row[: row.index(stop) + 1] if stop in row else row)
    steps = []
    session.generate(PROMPTS, 4, callback=lambda i, t: steps.append((i, t.tolist())))
    assert [i for i, _ in steps] == [0, 1, 2, 3]
    assert [t for _, t in steps] == [list(c) for c in zip(*[r[:4] for r in full])]
    assert [t.tolist() for t in session.stream(PROMPTS[:1], 3)] == [[t] for t in full[0][:3]]


@pytest.mark.parametrize("flavour", ["ort", "portable"])
def test_onnxruntime_genai_greedy_equals_ours(artifacts, flavour):
    import onnxruntime_genai as og

    art = artifacts[flavour]
    config = json.loads((art / "genai_config.json").read_text())
    assert config["search"]["past_present_share_buffer"] is (flavour == "ort")
    eos = config["model"]["eos_token_id"]
    prompt = PROMPTS[0]
    ours = ORTSession(art).generate([prompt], 12, stop_ids=[eos])[0]
    model = og.Model(str(art))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + 12, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    theirs = []
    while not generator.is_done():
        generator.generate_next_token()
        theirs.append(int(generator.get_next_tokens()[0]))
    assert len(theirs) >= 5 and theirs == ours


def test_cli_compile_run_generate(llama, tmp_path):
    graph_dir = save(llama, tmp_path / "graph")
    runner = CliRunner()
    art = tmp_path / "art"
    result = runner.invoke(main, ["compile", str(graph_dir), "--target", "onnx", "-o", str(art)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(main, ["compile", str(graph_dir), "-o", str(art)])
    assert again.exit_code != 0 and "pass --force to replace it" in again.output
    assert (
        runner.invoke(
            main, ["compile", str(graph_dir), "-o", str(art), "--force", "--flavour", "portable"]
        ).exit_code
        == 0
    )
    ran = [
        runner.invoke(main, ["run", str(p), "--ids", "1,2,3", "--decode", "--json"])
        for p in (graph_dir, art)
    ]
    logits = [np.asarray(json.loads(r.output)["logits"]) for r in ran]
    np.testing.assert_allclose(logits[1], logits[0], atol=1e-4)
    gen = runner.invoke(
        main, ["generate", str(art), "--prompt-ids", "1,5,9,3,7", "-n", "6", "--ids-only"]
    )
    assert gen.exit_code == 0, gen.output
    assert gen.output.split() == [
        str(t) for t in InterpreterSession(llama).generate([PROMPTS[0]], 6)[0]
    ]


def test_shared_kv_buffer_grows_past_its_capacity(llama, artifacts):
    session = ORTSession(artifacts["ort"])
    assert session.share_buffer and not ORTSession(artifacts["portable"]).share_buffer
    prompt = [
        [int(t) for t in np.random.default_rng(1).integers(1, 64, 250)]
    ]  # 250 + 10 crosses 256
    assert session.generate(prompt, 10) == InterpreterSession(llama).generate(prompt, 10)


def test_cli_compiles_a_zoo_name_with_passes_and_check(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main, ["compile", "llama-2", "-o", str(tmp_path / "a"), "--passes", "dce", "--check"]
    )
    assert result.exit_code == 0, result.output
    assert "check decode: max |logits - interpreter|" in result.output
    assert (
        runner.invoke(main, ["compile", "no-such-model", "-o", str(tmp_path / "b")]).exit_code != 0
    )


def test_left_padding_is_refused_where_gqa_cannot_take_it(artifacts):
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    mask = np.array([[0, 1, 1], [1, 1, 1]])
    with pytest.raises(RuntimeFailure, match="right padding only"):
        ORTSession(artifacts["ort"]).forward(ids, mask=mask)
    ORTSession(artifacts["portable"]).forward(ids, mask=mask)  # decomposed attention takes it
