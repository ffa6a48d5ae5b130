"""`irgraph compile --target tvm-*` and `irgraph generate` on the result, through the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from irgraph.cli import main
from irgraph.errors import ConfigError
from tests.helpers.handbuilt import tiny_llama


def test_compile_tvm_llvm_then_generate_matches_the_saved_graph(tmp_path):
    tiny_llama().save(str(tmp_path / "graph"))
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["compile", str(tmp_path / "graph"), "--target", "tvm-llvm", "-o", str(tmp_path / "art")],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["target"] == "tvm-llvm" and manifest["tvm"]["cuda_arch"] is None
    again = runner.invoke(
        main,
        ["compile", str(tmp_path / "graph"), "--target", "tvm-llvm", "-o", str(tmp_path / "art")],
    )
    assert again.exit_code != 0 and "--force" in again.output
    outputs = []
    for path in (tmp_path / "art", tmp_path / "graph"):
        result = runner.invoke(
            main,
            [
                "generate",
                str(path),
                "--prompt-ids",
                "1,5,9,3",
                "--prompt-ids",
                "7,2",
                "-n",
                "6",
                "--ids-only",
            ],
        )
        assert result.exit_code == 0, result.output
        outputs.append(result.output.split())
    assert outputs[0] == outputs[1] and len(outputs[0]) == 12


def test_compile_rejects_an_unknown_cuda_arch(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "compile",
            "x",
            "--target",
            "tvm-cuda",
            "--cuda-arch",
            "sm_50",
            "-o",
            str(tmp_path / "art"),
        ],
    )
    assert result.exit_code != 0 and "sm_50" in result.output


def test_compile_graph_refuses_a_non_empty_folder_by_default_before_building(tmp_path):
    from irgraph.codegen.tvm.artifact import compile_graph

    out = tmp_path / "art"
    tiny_llama().save(out)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ConfigError, match="not empty .an irgraph output.; pass force=True"):
        compile_graph(tiny_llama(), out)
    assert sorted(p.name for p in out.iterdir()) == before
