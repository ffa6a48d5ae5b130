"""No silent data loss: the output-folder rule (irgraph/output.py) for every verb and the API.

A non-empty folder is refused unless --force; --force replaces only an irgraph output and
says so; a folder overlapping the inputs is never written; a location that cannot be
written is refused before any work starts. Every refusal is one line, exit 1, and leaves
the user's files byte for byte as they were.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import irgraph
from irgraph.atomic import current_umask
from irgraph.cli import main
from irgraph.errors import ConfigError
from irgraph.model_zoo.hf_import import import_to_dir
from tests.helpers.handbuilt import tiny_llama
from tests.helpers.hf_dirs import llama_dir


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (hidden ones too) -> its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(result, *words: str) -> None:
    """Exit 1 with one `Error:` line containing `words`, no traceback."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0], result.output


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A saved graph and a tiny HF checkpoint, read (never written) by every test."""
    root = tmp_path_factory.mktemp("inputs")
    irgraph.save(tiny_llama(), root / "graph")
    return {"graph": root / "graph", "hf": llama_dir(root)}


# verb -> the command line writing to OUT (a zoo model, so nothing slow)
VERBS = {
    "import-hf": lambda i, out: ["import-hf", i["hf"], "-o", out],
    "opt": lambda i, out: ["opt", i["graph"], "--passes", "dce", "-o", out],
    "compile": lambda i, out: ["compile", i["graph"], "--target", "onnx", "-o", out],
    "zoo build": lambda i, out: ["zoo", "build", "llama", "-o", out],
}


@pytest.mark.parametrize("verb", VERBS)
def test_a_users_folder_is_never_replaced(verb, inputs, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / "sub").mkdir()
    (out / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = snapshot(tmp_path)
    refused(invoke(*VERBS[verb](inputs, out)), "not empty", "irgraph did not write it")
    refused(invoke(*VERBS[verb](inputs, out), "--force"), "not an irgraph output")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("verb", VERBS)
def test_an_irgraph_output_needs_force_and_force_says_what_it_replaced(verb, inputs, tmp_path):
    out = tmp_path / "out"
    irgraph.save(tiny_llama(seed=5), out)
    before = snapshot(tmp_path)
    refused(invoke(*VERBS[verb](inputs, out)), "not empty (an irgraph output)", "--force")
    assert snapshot(tmp_path) == before
    result = CliRunner().invoke(main, [str(a) for a in (*VERBS[verb](inputs, out), "--force")])
    assert result.exit_code == 0, result.output
    assert f"replaced the earlier irgraph output in {out} (graph.irg" in result.stderr
    assert snapshot(out) != before  # really replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or .old left


@pytest.mark.parametrize("verb", VERBS)
def test_a_new_or_empty_folder_is_written_without_force(verb, inputs, tmp_path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        result = invoke(*VERBS[verb](inputs, out))
        assert result.exit_code == 0, result.output
        assert "replaced" not in result.output and (out / "graph.irg").is_file()
        assert out.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # not mkdtemp's 0700


@pytest.mark.parametrize(
    "args",
    [
        lambda i, t: ["import-hf", i["hf"], "-o", i["hf"], "--force"],
        lambda i, t: ["import-hf", i["hf"], "-o", i["hf"] / "sub"],
        lambda i, t: ["import-hf", i["hf"], "-o", i["hf"].parent, "--force"],
        lambda i, t: ["opt", i["graph"], "--passes", "dce", "-o", i["graph"], "--force"],
        lambda i, t: ["compile", i["graph"], "-o", i["graph"], "--force"],
        lambda i, t: ["compile", i["graph"], "-o", i["graph"] / "art"],
    ],
    ids=[
        "import-hf-same",
        "import-hf-inside-input",
        "import-hf-holds-input",
        "opt-same",
        "compile-same",
        "compile-inside-input",
    ],
)
def test_an_output_overlapping_the_inputs_is_refused_even_with_force(args, inputs, tmp_path):
    root = inputs["graph"].parent
    before = snapshot(root)
    refused(invoke(*args(inputs, tmp_path)), "input of this command")
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "out, words",
    [
        (".", ["current folder"]),
        ("..", ["current folder"]),
        ("/", ["current folder"]),
        ("file.txt/sub", ["under", "which is a file"]),
        ("/proc/irgraph-test/out", ["cannot create the output folder in /proc"]),
        ("link", ["symbolic link"]),
    ],
)
def test_an_invalid_location_is_refused_before_any_work(out, words, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "file.txt").write_text("mine")
    (tmp_path / "elsewhere").mkdir()
    (work / "link").symlink_to(tmp_path / "elsewhere")
    monkeypatch.chdir(work)

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output location was checked")

    monkeypatch.setattr("irgraph.cli.compile_cmd.load_source", no_work)
    before = snapshot(tmp_path)
    refused(invoke("compile", "llama", "-o", out, "--force"), *words)
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in work.iterdir()) == ["file.txt", "link"]


def test_a_file_is_no_output_folder(tmp_path):
    from irgraph.output import check_output

    (tmp_path / "f").write_text("mine")
    with pytest.raises(ConfigError, match="the output path is a file"):
        check_output(tmp_path / "f", force=True)
    assert (tmp_path / "f").read_text() == "mine"


def test_api_defaults_refuse_a_non_empty_folder(inputs, tmp_path):
    from irgraph.codegen.onnx import compile_graph

    out = tmp_path / "g"
    irgraph.save(tiny_llama(), out)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="not empty .an irgraph output.; pass overwrite=True"):
        irgraph.save(tiny_llama(seed=1), out)
    with pytest.raises(ConfigError, match="not empty"):
        tiny_llama(seed=1).save(out)
    with pytest.raises(ConfigError, match="not empty"):
        import_to_dir(inputs["hf"], out)
    with pytest.raises(ConfigError, match="not empty .an irgraph output.; pass force=True"):
        compile_graph(tiny_llama(), out)
    assert snapshot(tmp_path) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("x")
    for write in (
        lambda: irgraph.save(tiny_llama(), mine, overwrite=True),
        lambda: import_to_dir(inputs["hf"], mine, overwrite=True),
        lambda: compile_graph(tiny_llama(), mine, force=True),
    ):
        with pytest.raises(ConfigError, match="not an irgraph output"):
            write()
    with pytest.raises(ConfigError, match="is an input"):
        import_to_dir(inputs["hf"], inputs["hf"], overwrite=True)
    assert (mine / "a.txt").read_text() == "x" and sorted(os.listdir(mine)) == ["a.txt"]


def test_replacing_keeps_other_hidden_siblings_and_a_failed_write_keeps_the_old(tmp_path):
    out = tmp_path / "g"
    irgraph.save(tiny_llama(), out)
    (tmp_path / ".g.old").mkdir()  # the user's, not ours (the old rule deleted it)
    (tmp_path / ".g.old" / "keep.txt").write_text("keep")
    irgraph.save(tiny_llama(seed=1), out, overwrite=True)
    assert (tmp_path / ".g.old" / "keep.txt").read_text() == "keep"
    before = snapshot(tmp_path)
    with pytest.raises(FileNotFoundError):
        irgraph.save(
            tiny_llama(seed=2), out, overwrite=True, extra_files={"x.json": tmp_path / "missing"}
        )
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".g.old", "g"]


@pytest.mark.parametrize("verb", [*VERBS, "train"])
def test_help_states_the_rule(verb):
    result = invoke(*verb.split(), "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--force" in text and "irgraph did not write" in text


# ---- train: resumes its own run only ----


@pytest.fixture(scope="module")
def train_inputs(tmp_path_factory) -> dict[str, Path]:
    from tests.helpers.torch_graphs import byte_llama

    root = tmp_path_factory.mktemp("train")
    byte_llama().save(root / "a")
    byte_llama(hidden=16, heads=2, kv_heads=1).save(root / "b")
    (root / "corpus").mkdir()
    (root / "corpus" / "text.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    return {"a": root / "a", "b": root / "b", "corpus": root / "corpus"}


def train_args(inputs, source: str, out, *extra) -> list:
    return [
        "train", inputs[source], "--corpus", inputs["corpus"], "--steps", "2", "-o", out,
        "--batch-size", "2", "--seq-len", "16", "--eval-tokens", "64", "--no-bf16",
        "--heldout-fraction", "0.5", *extra,
    ]  # fmt: skip


def test_train_resumes_its_own_run_and_refuses_another_models(train_inputs, tmp_path):
    out = tmp_path / "run"
    assert invoke(*train_args(train_inputs, "a", out)).exit_code == 0
    step = out / "checkpoints" / "step-0000002"
    state = json.loads((step / "state.json").read_text())
    assert state["source"] == str(train_inputs["a"]) and len(state["model_hash"]) == 16
    assert step.stat().st_mode & 0o777 == 0o777 & ~current_umask()
    again = invoke(*train_args(train_inputs, "a", out))
    assert again.exit_code == 0 and "resumed from step 2" in again.output
    before = snapshot(tmp_path)
    refused(invoke(*train_args(train_inputs, "b", out)), "checkpoints of another model", "--force")
    refused(
        invoke(*train_args(train_inputs, "a", out, "--lr", "0.01")),
        "different recipe (lr 0.001 here, 0.01 now)",
    )
    assert snapshot(tmp_path) == before
    forced = CliRunner().invoke(
        main, [str(a) for a in train_args(train_inputs, "b", out, "--force")]
    )
    assert forced.exit_code == 0, forced.output
    assert f"replaced the earlier irgraph output in {out} (checkpoints/" in forced.stderr
    state = json.loads((out / "checkpoints" / "step-0000002" / "state.json").read_text())
    assert state["source"] == str(train_inputs["b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_train_force_puts_the_old_run_back_if_the_new_one_fails(
    train_inputs, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    assert invoke(*train_args(train_inputs, "a", out)).exit_code == 0
    before = snapshot(tmp_path)

    def fail(*args, **kwargs):
        raise ConfigError("disk full", where=str(out))

    monkeypatch.setattr("irgraph.codegen.torch.trainer.save_trained", fail)
    failed = invoke(*train_args(train_inputs, "b", out, "--force"))
    assert failed.exit_code == 1 and f"Error: {out}: disk full" in failed.output
    assert snapshot(tmp_path) == before


def test_train_refuses_other_folders_unless_forced(train_inputs, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    graph = tmp_path / "graph"
    irgraph.save(tiny_llama(), graph)
    before = snapshot(tmp_path)
    refused(invoke(*train_args(train_inputs, "a", mine)), "irgraph did not write it")
    refused(invoke(*train_args(train_inputs, "a", mine, "--force")), "not an irgraph output")
    refused(invoke(*train_args(train_inputs, "a", graph)), "(an irgraph output); pass --force")
    corpus = train_inputs["corpus"]
    refused(invoke(*train_args(train_inputs, "a", corpus / "out")), "inside an input")
    refused(invoke(*train_args(train_inputs, "a", train_inputs["a"], "--force")), "is an input")
    assert snapshot(tmp_path) == before and os.listdir(corpus) == ["text.txt"]


def test_train_checks_the_location_before_loading_anything(train_inputs, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the source was loaded before the output location was checked")

    monkeypatch.setattr("irgraph.cli.train_cmd.load_source", no_work)
    refused(invoke(*train_args(train_inputs, "a", "/proc/irgraph-test")), "cannot create")


def test_an_old_checkpoint_of_another_shape_is_a_clear_error(train_inputs, tmp_path):
    out = tmp_path / "run"
    assert invoke(*train_args(train_inputs, "a", out)).exit_code == 0
    state_file = out / "checkpoints" / "step-0000002" / "state.json"
    state = json.loads(state_file.read_text())
    del state["source"], state["model_hash"]  # written before runs recorded their model
    state_file.write_text(json.dumps(state))
    result = invoke(*train_args(train_inputs, "b", out))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "model.safetensors: checkpoint does not fit the model: size mismatch" in result.output


def test_trainer_api_refuses_a_folder_that_is_not_its_run(train_inputs, tmp_path):
    from irgraph.codegen.torch.trainer import TrainConfig, Trainer
    from irgraph.text import ByteTokenizer, load_corpus
    from tests.helpers.torch_graphs import byte_llama

    corpus = load_corpus([train_inputs["corpus"]], ByteTokenizer(), heldout_fraction=0.5)
    config = TrainConfig(steps=1, batch_size=2, seq_len=16, eval_tokens=64, bf16=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    before = snapshot(tmp_path)
    for out, words in ((tmp_path / "mine", "holds no training run"), ("/proc/x", "cannot create")):
        with pytest.raises(ConfigError, match=words):
            Trainer(byte_llama(), corpus, config, out).run(resume=False)
    assert snapshot(tmp_path) == before
