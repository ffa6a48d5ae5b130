"""Progress that moves (issue 19): every long step reports as it goes; the CLI draws it only
on a terminal and never under `irgraph --quiet`."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

from irgraph.cli import main, progress
from irgraph.codegen.onnx import compile_graph
from irgraph.serialize import save
from tests.helpers.handbuilt import tiny_llama


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


class Recorder:
    def __init__(self):
        self.reports: list[tuple[int, int, str]] = []

    def __call__(self, done: int, total: int, what: str = "") -> None:
        self.reports.append((done, total, what))

    def steps(self) -> dict[str, list[int]]:
        by: dict[str, list[int]] = {}
        for done, total, what in self.reports:
            by.setdefault(what, []).append(done)
            assert 0 <= done <= total, (done, total, what)
        return by


def test_onnx_lowering_reports_every_node_and_weight_then_saving_and_checking(tmp_path):
    graph = tiny_llama()
    report = Recorder()
    compile_graph(graph, tmp_path / "art", progress=report, default_passes=False)
    steps = report.steps()
    lowered = steps[f"lowering {graph.name} to ONNX"]
    assert lowered == list(range(len(graph.nodes) + 1))  # one report per node, 0 .. n
    whats = list(dict.fromkeys(w for _, _, w in report.reports))
    assert whats == [
        f"lowering {graph.name} to ONNX",
        "writing the ONNX weights",
        "saving the ONNX model",
        "checking the ONNX model",
    ]
    assert all(steps[w][-1] == t for _, t, w in report.reports)  # every step ends at its total


def test_saving_weights_reports_every_tensor(tmp_path):
    graph = tiny_llama()
    report = Recorder()
    save(graph, tmp_path / "g", progress=report)
    n = len(graph.stored_names())
    assert report.steps() == {"writing weights.safetensors": list(range(n + 1))}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_reporter_draws_moving_counts_on_a_terminal_only(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(progress, "_quiet", False)
    with progress.reporter() as report:
        for i in range(5):
            report(i, 4, "lowering")
            report.drawn = 0.0  # as if 0.1 s had passed: draw every report
        report(0, 2, "saving")
    drawn = terminal.getvalue()
    for i in range(5):
        assert f"{i}/4" in drawn
    assert "lowering" in drawn and "saving" in drawn
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a pipe: nothing at all
    with progress.reporter() as report:
        report(1, 2, "lowering")
        assert report.bar is None
    monkeypatch.setattr("sys.stderr", terminal)
    progress.set_quiet(True)
    try:
        with progress.reporter() as report:
            report(1, 2, "lowering")
            assert report.bar is None
        assert progress.bar(total=3).disable
    finally:
        progress.set_quiet(False)


def test_quiet_flag_and_no_terminal_draw_nothing(tmp_path):
    save(tiny_llama(), tmp_path / "g")
    result = invoke("--quiet", "compile", tmp_path / "g", "-o", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no bar, no carriage returns
    result = invoke("compile", tmp_path / "g", "-o", tmp_path / "b")
    assert result.exit_code == 0 and "\r" not in result.stderr  # CliRunner's stderr: no terminal


@pytest.mark.slow  # a real TVM build (about 10 s)
def test_tvm_build_reports_its_stages_in_order(tmp_path):
    pytest.importorskip("tvm")
    from irgraph.codegen.tvm.artifact import BUILD_STAGES
    from irgraph.codegen.tvm.artifact import compile_graph as tvm_compile

    report = Recorder()
    graph = tiny_llama()
    tvm_compile(graph, tmp_path / "tvm", progress=report)
    seen = [(done, what) for done, _, what in report.reports]
    expected = [(i, f"TVM build: {s}") for i, s in enumerate(BUILD_STAGES)]
    assert seen == [*expected, (5, "TVM build")]
