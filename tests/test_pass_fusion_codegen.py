"""Fused graphs lower through the backends unchanged: compiled outputs match the unfused interpreter."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph
import irgraph.runtimes
from irgraph.passes import run_pipeline
from tests.handbuilt import tiny_llama
from tests.pass_models import parallel_lm

IDS = [[3, 1, 4, 1, 5, 9]]


def compiled_matches(graph: irgraph.Graph, pipeline: str, folder, backend: str = "tvm", **options) -> None:
    """Compile `graph` after `pipeline` for `backend`; its prefill and decode match the unfused interpreter."""
    fused = run_pipeline(graph, pipeline, check=True).graph
    if backend == "tvm":
        from irgraph.codegen.tvm.artifact import compile_graph
    else:
        from irgraph.codegen.onnx import compile_graph
    compile_graph(fused, folder, **options)
    session = irgraph.runtimes.open(folder)
    reference = irgraph.interpret(graph, IDS)
    np.testing.assert_allclose(session.forward(IDS, decode=True), reference, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(session.forward(IDS), reference, atol=1e-4, rtol=1e-4)


def test_tvm_runs_the_fused_parallel_block(tmp_path):
    compiled_matches(parallel_lm(bias=True), "fuse-parallel-attention", tmp_path / "palm", target="tvm-llvm")


@pytest.mark.parametrize("flavour", ["ort", "portable"])
def test_onnx_runs_fused_graphs(tmp_path, flavour):
    compiled_matches(parallel_lm(bias=True), "fuse-parallel-attention", tmp_path / "palm", "onnx", flavour=flavour)
    compiled_matches(parallel_lm(shared_norm=False, fused_qkv=True, gated=False), "fuse-parallel-attention",
                     tmp_path / "neox", "onnx", flavour=flavour)
    compiled_matches(tiny_llama(), "fuse-qkv,fuse-gate-up", tmp_path / "llama", "onnx", flavour=flavour)


@pytest.mark.slow
@pytest.mark.parametrize("name, graph, pipeline", [
    ("neox", lambda: parallel_lm(shared_norm=False, fused_qkv=True, gated=False, bias=True), "fuse-parallel-attention"),
    ("llama", tiny_llama, "fuse-qkv,fuse-gate-up"),
])
def test_tvm_runs_other_fusions(tmp_path, name, graph, pipeline):
    compiled_matches(graph(), pipeline, tmp_path / name, target="tvm-llvm")
