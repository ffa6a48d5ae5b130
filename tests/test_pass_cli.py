"""`irgraph passes list`, `irgraph explain`, `irgraph opt`: output and errors."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

import irgraph
import irgraph.runtimes
from irgraph.cli import main
from tests.helpers.handbuilt import tiny_llama
from tests.helpers.pass_models import parallel_lm


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_passes_list_shows_kind_and_options():
    r = invoke("passes", "list")
    assert r.exit_code == 0, r.output
    rows = r.output.splitlines()
    assert any(row.split()[:2] == ["parallelize-blocks", "arch-change"] for row in rows)
    assert "  share_norm: bool = false" in r.output and "  max_elements: int = 16777216" in r.output
    assert "max_elements: int = 16777216 [0 <= max_elements]  largest result" in r.output


def test_explain_reports_each_candidate(tmp_path):
    irgraph.save(tiny_llama(), tmp_path / "llama")
    r = invoke("explain", "fuse-parallel-attention", str(tmp_path / "llama"), "--only-misses")
    assert r.exit_code == 0, r.output
    assert (
        "parallel-input-projection @ node rms_norm #1: no: only attention projections read this "
        "norm" in r.output
    )
    assert (
        r.output.splitlines()[-1] == "# fuse-parallel-attention: fires at 0 of 9 candidate places"
    )
    r = invoke("explain", "fuse-qvk", str(tmp_path / "llama"))
    assert r.exit_code == 1 and "Error: unknown rule 'fuse-qvk'" in r.output


def test_opt_applies_a_checked_pipeline_and_saves(tmp_path):
    src, dst = tmp_path / "palm", tmp_path / "palm-fused"
    g = parallel_lm()
    irgraph.save(g, src)
    r = invoke(
        "opt",
        str(src),
        "--passes",
        "fuse-parallel-attention,dce",
        "--check",
        "--print-after",
        "fuse-parallel-attention",
        "-o",
        str(dst),
    )
    assert r.exit_code == 0, r.output
    assert (
        "// IR after fuse-parallel-attention" in r.output
        and "= linear(%0, @layers.0.in_proj.weight)" in r.output
    )
    out = irgraph.load(dst)
    assert sum(n.op == "linear" for n in out.nodes) == 5
    ids = [[1, 2, 3]]
    np.testing.assert_allclose(
        irgraph.interpret(out, ids, decode=True), irgraph.interpret(g, ids), atol=1e-5
    )


def test_opt_check_mode_chooses_how_passes_are_checked(tmp_path):
    irgraph.save(tiny_llama(), tmp_path / "llama")
    args = ["opt", str(tmp_path / "llama"), "--passes", "fuse-qkv", "--check"]
    r = invoke(*args, "--check-mode", "end-to-end", "-o", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    row = next(line for line in r.output.splitlines() if line.startswith("fuse-qkv"))
    assert float(row.split()[5]) <= 1e-5  # the max err column, measured end to end
    r = invoke(*args, "--check-mode", "exhaustive", "-o", str(tmp_path / "out2"))
    assert (
        r.exit_code == 2
        and "'exhaustive' is not one of 'auto', 'random-io', 'end-to-end'" in r.output
    )


def test_opt_errors_are_one_line(tmp_path):
    irgraph.save(tiny_llama(), tmp_path / "llama")
    cases = {
        ("--passes", "parallelize-blocks"): "changes the architecture",
        ("--passes", "dce(x=1)"): "unknown option 'x' for pass dce",
        (
            "--passes",
            "cse",
            "--print-after",
            "dce",
        ): "--print-after names passes not in the pipeline: dce",
    }
    for args, message in cases.items():
        r = invoke("opt", str(tmp_path / "llama"), *args, "-o", str(tmp_path / "out"))
        assert r.exit_code == 1 and message in r.output, r.output
        assert not (tmp_path / "out").exists()
    r = invoke(
        "opt",
        str(tmp_path / "llama"),
        "--passes",
        "parallelize-blocks",
        "--allow-arch-change",
        "-o",
        str(tmp_path / "out"),
    )
    assert r.exit_code == 0, r.output


def test_compile_runs_the_pipeline_before_codegen(tmp_path):
    g = parallel_lm()
    irgraph.save(g, tmp_path / "palm")
    art = tmp_path / "palm-onnx"
    r = invoke(
        "compile",
        str(tmp_path / "palm"),
        "--target",
        "onnx",
        "-o",
        str(art),
        "--passes",
        "fuse-parallel-attention",
        "--check",
        "--timing",
    )
    assert r.exit_code == 0, r.output
    assert "fuse-parallel-attention" in r.output and "exact" in r.output  # the timing table
    assert "= linear(%0, @layers.0.in_proj.weight)" in (art / "graph.irg").read_text()
    ids = [[2, 7, 1]]
    np.testing.assert_allclose(
        irgraph.runtimes.open(art).forward(ids, decode=True), irgraph.interpret(g, ids), atol=1e-4
    )
    r = invoke(
        "compile",
        str(tmp_path / "palm"),
        "--target",
        "onnx",
        "-o",
        str(tmp_path / "x"),
        "--passes",
        "parallelize-blocks",
    )
    assert (
        r.exit_code == 1
        and "changes the architecture" in r.output
        and not (tmp_path / "x").exists()
    )
