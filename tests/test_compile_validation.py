"""`irgraph compile` exits 0 only with an artifact that runs (issue 12): options that do not
apply to the target are refused, a graph without logits / present outputs is refused, the
written artifact is opened and run for one token, and one that does not load is removed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import irgraph
from irgraph.cli import main
from tests.helpers.handbuilt import tiny_llama


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compile") / "g"
    irgraph.save(tiny_llama(layers=1), folder)
    return folder


def compile_(*args):
    result = CliRunner().invoke(main, ["compile", *map(str, args)])
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    "target,option,message",
    [
        (
            "tvm-llvm",
            ["--dtype", "f16"],
            "--dtype does not apply to target tvm-llvm (only to onnx, gguf)",
        ),
        ("tvm-llvm", ["--cuda-arch", "sm_80"], "--cuda-arch does not apply to target tvm-llvm"),
        ("onnx", ["--cuda-arch", "sm_90"], "(only to tvm-cuda)"),
        (
            "onnx",
            ["--requantize", "q8_0"],
            "--requantize does not apply to target onnx (only to gguf)",
        ),
    ],
)
def test_options_that_do_not_apply_to_the_target_are_refused(
    saved, tmp_path, target, option, message
):
    result = compile_(saved, "--target", target, *option, "-o", tmp_path / "art")
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "art").exists()


def test_a_graph_without_logits_or_present_outputs_is_refused(tmp_path):
    graph = tiny_llama(layers=1)
    graph.outputs = {"hidden": graph.outputs["logits"], **graph.outputs}
    del graph.outputs["logits"], graph.outputs["present.0.value"]
    irgraph.save(graph, tmp_path / "g")
    result = compile_(tmp_path / "g", "-o", tmp_path / "art")
    assert result.exit_code == 1, result.output
    assert "(expected logits, present.0.value, got hidden, present.0.key)" in result.output
    assert not (tmp_path / "art").exists()


def test_compile_loads_what_it_wrote(saved, tmp_path):
    result = compile_(saved, "-o", tmp_path / "art")
    assert result.exit_code == 0, result.output
    assert "load check: opened and ran one token in" in result.output


def test_a_bf16_onnx_artifact_cpu_onnxruntime_cannot_load_is_removed(saved, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a CUDA provider runs bf16")
    result = compile_(saved, "--dtype", "bf16", "-o", tmp_path / "art")
    assert result.exit_code == 1, result.output
    assert "does not run on this machine, so it was removed" in result.output
    assert "--dtype bf16" in result.output and "--no-load-check" in result.output
    assert not (tmp_path / "art").exists()
    built = compile_(saved, "--dtype", "bf16", "-o", tmp_path / "art", "--no-load-check")
    assert built.exit_code == 0 and (tmp_path / "art" / "manifest.json").is_file()
