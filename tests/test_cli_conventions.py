"""One CLI convention across verbs (issue 19): every verb's --help, --json, --force, generate.

The walk over every verb's `--help` checks what each verb promises: the verbs that print
data take --json, every verb that writes a folder or a file takes the shared --force
option (irgraph/cli/output_rule.py), the group takes --quiet and --debug.
"""

from __future__ import annotations

import json
import os
import stat

import click
import numpy as np
import pytest
from click.testing import CliRunner

import irgraph
import irgraph.runtimes
from irgraph import model_zoo
from irgraph.analysis import cost
from irgraph.cli import main
from irgraph.cli.output_rule import FILE_FORCE_HELP, FORCE_HELP
from irgraph.errors import ConfigError
from tests.helpers.handbuilt import tiny_llama

DATA_VERBS = {  # verbs that print data: each takes --json
    ("inspect",),
    ("eval",),
    ("passes", "list"),
    ("zoo", "list"),
    ("zoo", "show"),
    ("generate",),
}


def invoke(*args: object, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def walk(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from walk(cmd, (*path, name))
        else:
            yield (*path, name), cmd


VERBS = dict(walk(main))


def options(cmd: click.Command) -> dict[str, click.Option]:
    return {o: p for p in cmd.params if isinstance(p, click.Option) for o in p.opts}


def test_every_verbs_help_and_the_conventions():
    assert {"--quiet", "-q", "--debug"} <= set(options(main))
    assert DATA_VERBS <= set(VERBS)
    writers = 0
    for path, cmd in VERBS.items():
        result = invoke(*path, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output, path
        opts = options(cmd)
        if path in DATA_VERBS:
            assert "--json" in opts and opts["--json"].help, path
        if "-o" in opts:  # writes a folder or a file: the shared --force rule
            writers += 1
            assert "--force" in opts, path
            force_help = opts["--force"].help or ""
            is_file = not getattr(opts["-o"].type, "dir_okay", True)
            assert (
                force_help == (FILE_FORCE_HELP if is_file else FORCE_HELP)
                or "never replaced" in force_help  # train: kept aside until the new run is saved
            ), path
            assert "--force" in (opts["-o"].help or ""), path
    assert writers >= 6  # import-hf, opt, compile, train, zoo build, view
    assert "artifact" in (options(VERBS[("compile",)])["--check"].help or "")
    for o in ("--top-k", "--top-p"):
        assert "--temperature" in (options(VERBS[("generate",)])[o].help or "")


def test_passes_list_json():
    result = invoke("passes", "list", "--json", "--target", "onnx")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    passes = {p["name"]: p for p in data["passes"]}
    assert passes["cse"]["kind"] == "exact" and passes["cse"]["summary"]
    quantize = {o["name"]: o for o in passes["quantize"]["options"]}
    assert quantize["bits"]["type"] == "int" and isinstance(quantize["bits"]["default"], int)
    text = invoke("passes", "list", "--target", "onnx").output
    assert f"default passes for onnx: {data['default_passes']['pipeline']}" in text
    for name in passes:
        assert f"\n{name} " in "\n" + text


def test_zoo_show_json_matches_the_cost():
    result = invoke("zoo", "show", "llama-2", "--size", "tiny", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    graph = model_zoo.build("llama-2", size="tiny", weights=False)
    c = cost(graph)
    assert (data["name"], data["size"], data["nodes"]) == ("llama-2", "tiny", len(graph.nodes))
    assert data["params"] == c.params and data["kv_bytes_per_token"] == c.kv_bytes_per_token
    assert data["ir"] == str(graph) and data["sources"] and data["claims"]
    no_text = json.loads(invoke("zoo", "show", "llama-2", "--json", "--no-text").output)
    assert "ir" not in no_text and no_text["size"] == "published"


def test_zoo_list_shows_the_params_note(monkeypatch):
    noted = [n for n in model_zoo.names() if model_zoo.get(n).params_note]
    assert noted
    monkeypatch.setattr(model_zoo, "names", lambda: [*noted, "llama-2"])  # not all 43: faster
    out = invoke("zoo", "list").output
    for name in noted:
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert "B*" in row
        assert f"* {name}: {model_zoo.get(name).params_note}" in out
    assert sum("B*" in line for line in out.splitlines()) == len(noted)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("conv") / "llama"
    irgraph.save(tiny_llama(), path)
    return path


def test_top_k_or_top_p_without_temperature_is_an_error(saved):
    for extra in (["--top-k", "5"], ["--top-p", "0.9"]):
        result = invoke("generate", saved, "--prompt-ids", "1,2", *extra)
        assert result.exit_code == 2 and extra[0] in result.output
        assert "--temperature" in result.output and result.output.count("\n") == 1
    result = invoke(
        "generate", saved, "--prompt-ids", "1,2", "--top-k", "5", "--temperature", "0.7", "-n", "2"
    )
    assert result.exit_code == 0, result.output


def test_generate_json_lines_and_ids_only_agree(saved):
    ids = invoke("generate", saved, "--prompt-ids", "1,2,3", "-n", "5", "--ids-only")
    assert ids.exit_code == 0, ids.output
    tokens = [int(t) for t in ids.stdout.split()]
    lines = invoke("generate", saved, "--prompt-ids", "1,2,3", "-n", "5", "--json").stdout
    records = [json.loads(line) for line in lines.splitlines()]
    assert [r["id"] for r in records] == tokens and len(tokens) == 5
    assert [r["index"] for r in records] == list(range(5)) and {r["row"] for r in records} == {0}
    batch = invoke(
        "generate", saved, "--prompt-ids", "1,2,3", "--prompt-ids", "4,5", "-n", "3", "--json"
    ).stdout
    rows = [json.loads(line)["row"] for line in batch.splitlines()]
    assert rows == [0, 1, 0, 1, 0, 1]  # streamed step by step, every row


def test_ctrl_c_keeps_what_was_printed(saved, monkeypatch):
    real_open = irgraph.runtimes.open

    class Interrupted:
        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def stream(self, *args, **kw):
            for i, step in enumerate(self.session.stream(*args, **kw)):
                if i == 3:
                    raise KeyboardInterrupt
                yield step

    monkeypatch.setattr(irgraph.runtimes, "open", lambda *a, **k: Interrupted(real_open(*a, **k)))
    full = real_open(saved).generate([[1, 2, 3]], 8)[0]
    result = invoke("generate", saved, "--prompt-ids", "1,2,3", "-n", "8", "--ids-only")
    assert result.exit_code == 130
    assert result.stdout == " ".join(map(str, full[:3])) + "\n"
    assert "interrupted: kept the 3 token(s)" in result.stderr
    batch = invoke(
        "generate", saved, "--prompt-ids", "1,2,3", "--prompt-ids", "1,2,3", "-n", "8", "--ids-only"
    )
    assert batch.exit_code == 130
    assert batch.stdout.splitlines() == [" ".join(map(str, full[:3]))] * 2


def test_compile_check_without_passes_checks_the_artifact(tmp_path, saved):
    out = tmp_path / "art"
    result = invoke("compile", saved, "--no-default-passes", "--check", "-o", out)
    assert result.exit_code == 0, result.output
    checks = [line for line in result.stdout.splitlines() if line.startswith("check ")]
    errors = [float(line.rsplit("=", 1)[1]) for line in checks]
    assert len(errors) == 2 and max(errors) <= 1e-4


def test_outputs_get_the_users_umask(tmp_path, saved):
    old = os.umask(0o027)
    try:
        assert invoke("zoo", "build", "llama-2", "-o", tmp_path / "g").exit_code == 0
        assert invoke("view", saved, "-o", tmp_path / "v.html").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "v.html").stat().st_mode) == 0o640


def test_view_follows_the_shared_output_rule(tmp_path, saved):
    page = tmp_path / "v.html"
    page.write_text("mine")
    result = invoke("view", saved, "-o", page)
    assert result.exit_code == 1 and "pass --force to replace it" in result.output
    assert page.read_text() == "mine"
    inside = invoke("view", saved, "-o", saved / "v.html")
    assert inside.exit_code == 1 and "lies inside an input" in inside.output
    link = tmp_path / "link.html"
    link.symlink_to(page)
    assert "symbolic link" in invoke("view", saved, "-o", link, "--force").output
    assert invoke("view", saved, "-o", page, "--force").exit_code == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
    nested = tmp_path / "new" / "folder" / "v.html"  # its folder is made, as for -o folders
    assert invoke("view", saved, "-o", nested).exit_code == 0 and nested.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.html", "new", "v.html"]


def test_train_published_refuses_what_does_not_fit(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world " * 100)
    out = tmp_path / "run"
    result = invoke(
        "train", "palm", "--size", "published", "--corpus", corpus, "--steps", "1", "-o", out
    )
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "training palm at published size needs about" in result.output
    assert "GiB" in result.output and "--size tiny" in result.output
    assert not out.exists()


def test_train_published_builds_seeded_weights_when_it_fits(monkeypatch):
    from irgraph.cli import train_cmd, train_memory

    calls = []
    real = model_zoo.build_graph

    def fake_build(config, *, weights, seed):
        if weights is None:  # the structure, for the parameter count
            return real(config, weights=None, seed=seed)
        calls.append((config.name, config.hidden, weights, seed))
        return real(model_zoo.config("llama-2", "tiny"), weights=weights, seed=seed)

    monkeypatch.setattr(train_memory, "available_memory", lambda: 2**60)
    monkeypatch.setattr(model_zoo, "build_graph", fake_build)
    recipe = {"batch_size": 8, "grad_accum": 2, "seq_len": 64}
    train_cmd._load_trainee("llama-2", "published", 3, recipe, False)
    assert calls == [("llama-2", model_zoo.config("llama-2").hidden, "random", 3)]
    config = model_zoo.config("llama-2")
    params = cost(model_zoo.build("llama-2", size="published")).params
    need = train_memory.estimate(config, params, 4, 64)
    per_token = config.layers * config.hidden * 16 + config.vocab_size * 2
    assert need.weights_and_optimizer == 20 * params and need.activations == 4 * 64 * per_token * 4
    monkeypatch.setattr(train_memory, "available_memory", lambda: need.total - 1)
    with pytest.raises(ConfigError, match="smaller --batch-size"):
        train_cmd._load_trainee("llama-2", "published", 3, recipe, False)
    assert np.isclose(train_memory.estimate(config, params, 4, 64, lora=True).per_param, 8)
