"""Fused graphs lower through the backends as is: compiled outputs match the unfused interpreter."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph
import irgraph.runtimes
from irgraph.passes import run_pipeline
from tests.helpers.handbuilt import tiny_llama
from tests.helpers.pass_models import parallel_lm

IDS = [[3, 1, 4, 1, 5, 9]]


def compiled_matches(
    graph: irgraph.Graph, pipeline: str, folder, backend: str = "tvm", tol: float = 1e-4, **options
) -> None:
    """Compile `graph` after `pipeline` for `backend`; prefill and decode match the unfused one."""
    fused = run_pipeline(graph, pipeline, check=True).graph
    if backend == "tvm":
        from irgraph.codegen.tvm.artifact import compile_graph
    else:
        from irgraph.codegen.onnx import compile_graph
    compile_graph(fused, folder, **options)
    session = irgraph.runtimes.open(folder)
    reference = irgraph.interpret(graph, IDS)
    np.testing.assert_allclose(session.forward(IDS, decode=True), reference, atol=tol, rtol=tol)
    np.testing.assert_allclose(session.forward(IDS), reference, atol=tol, rtol=tol)


def test_tvm_runs_the_fused_parallel_block(tmp_path):
    compiled_matches(
        parallel_lm(bias=True), "fuse-parallel-attention", tmp_path / "palm", target="tvm-llvm"
    )


@pytest.mark.parametrize("flavour", ["ort", "portable"])
def test_onnx_runs_fused_graphs(tmp_path, flavour):
    compiled_matches(
        parallel_lm(bias=True),
        "fuse-parallel-attention",
        tmp_path / "palm",
        "onnx",
        flavour=flavour,
    )
    compiled_matches(
        parallel_lm(shared_norm=False, fused_qkv=True, gated=False),
        "fuse-parallel-attention",
        tmp_path / "neox",
        "onnx",
        flavour=flavour,
    )
    compiled_matches(
        tiny_llama(), "fuse-qkv,fuse-gate-up", tmp_path / "llama", "onnx", flavour=flavour
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, graph, pipeline",
    [
        (
            "neox",
            lambda: parallel_lm(shared_norm=False, fused_qkv=True, gated=False, bias=True),
            "fuse-parallel-attention",
        ),
        ("llama", tiny_llama, "fuse-qkv,fuse-gate-up"),
    ],
)
def test_tvm_runs_other_fusions(tmp_path, name, graph, pipeline):
    compiled_matches(graph(), pipeline, tmp_path / name, target="tvm-llvm")


def _acceptance_graph(name: str, tmp_path) -> irgraph.Graph:
    if name == "falcon-7b":  # an imported checkpoint: one shared norm, multi-query attention
        from irgraph.model_zoo.hf_import import import_hf
        from tests.helpers.hf_tiny import make_model, save_model

        return import_hf(save_model(make_model(name), tmp_path / "hf"))
    from irgraph.model_zoo import build

    return build(name, size="tiny", seed=0)


@pytest.mark.parametrize("backend", ["onnx", "tvm"])
@pytest.mark.parametrize("name", ["palm", "u-palm", "codegen", "falcon-7b"])
def test_fused_zoo_parallel_blocks_compile_to_the_same_numbers(tmp_path, name, backend):
    """Fused, compiled, equal to the unfused graph in the interpreter to 1e-5 (measured 2.4e-6)."""
    graph = _acceptance_graph(name, tmp_path)
    compiled_matches(graph, "fuse-parallel-attention", tmp_path / backend, backend, tol=1e-5)
