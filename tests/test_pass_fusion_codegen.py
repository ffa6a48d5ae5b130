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


def tvm_matches(graph: irgraph.Graph, pipeline: str, folder) -> None:
    from irgraph.codegen.tvm.artifact import compile_graph

    fused = run_pipeline(graph, pipeline, check=True).graph
    compile_graph(fused, folder, target="tvm-llvm")
    session = irgraph.runtimes.open(folder)
    reference = irgraph.interpret(graph, IDS)
    np.testing.assert_allclose(session.forward(IDS, decode=True), reference, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(session.forward(IDS), reference, atol=1e-4, rtol=1e-4)


def test_tvm_runs_the_fused_parallel_block(tmp_path):
    tvm_matches(parallel_lm(bias=True), "fuse-parallel-attention", tmp_path / "palm")


@pytest.mark.slow
@pytest.mark.parametrize("name, graph, pipeline", [
    ("neox", lambda: parallel_lm(shared_norm=False, fused_qkv=True, gated=False, bias=True), "fuse-parallel-attention"),
    ("llama", tiny_llama, "fuse-qkv,fuse-gate-up"),
])
def test_tvm_runs_other_fusions(tmp_path, name, graph, pipeline):
    tvm_matches(graph(), pipeline, tmp_path / name)
