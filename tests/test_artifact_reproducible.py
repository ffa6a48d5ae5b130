"""Reproducible builds: one graph compiled twice for one target gives the same bytes in every file.

The manifests agree but for the build time. Default tier: ONNX and tvm-llvm built twice in
this process, to two output paths (object addresses differ between the builds: TVM ordered
code by them, codegen/tvm/reproducible.py). Slow tier: every target, each build by
`irgraph compile` in its own process with its own PYTHONHASHSEED; tvm-cuda needs nvcc (no
GPU), tvm-aarch64 a cross g++.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from irgraph.codegen.onnx import compile_graph as compile_onnx
from irgraph.codegen.tvm import compile_graph as compile_tvm
from irgraph.codegen.tvm.targets import AARCH64_TRIPLE, CXX_ENV
from tests.helpers.handbuilt import tiny_llama

_has_nvcc = shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc")
_has_cross = os.environ.get(CXX_ENV) or shutil.which(f"{AARCH64_TRIPLE}-g++")
TARGETS = [
    pytest.param("onnx", marks=pytest.mark.slow),
    pytest.param("tvm-llvm", marks=pytest.mark.slow),
    pytest.param(
        "tvm-cuda",
        marks=[pytest.mark.slow, pytest.mark.skipif(not _has_nvcc, reason="nvcc not installed")],
    ),
    pytest.param(
        "tvm-aarch64",
        marks=[
            pytest.mark.slow,
            pytest.mark.skipif(not _has_cross, reason=f"no {AARCH64_TRIPLE}-g++ (set ${CXX_ENV})"),
        ],
    ),
]
COMPILE = "import sys; from irgraph.cli import main; main(sys.argv[1:])"


@pytest.fixture(scope="module")
def graph():
    return tiny_llama()


@pytest.fixture(scope="module")
def source(graph, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reproducible") / "graph"
    graph.save(str(folder))
    return folder


def _compile(source, out, target, seed):
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    args = [sys.executable, "-c", COMPILE, "compile", str(source), "--target", target]
    proc = subprocess.run([*args, "-o", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _manifest(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.get("tvm", {}).pop("build_seconds", None)  # the one entry allowed to differ
    return manifest


def _same(first, second):
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    differ = [
        n
        for n in names
        if n != "manifest.json" and (first / n).read_bytes() != (second / n).read_bytes()
    ]
    assert differ == []
    assert _manifest(first) == _manifest(second)
    assert set(_manifest(first)["files"]) == set(names) - {"manifest.json"}


@pytest.mark.parametrize("target", ["onnx", "tvm-llvm"])
def test_two_builds_in_one_process_give_the_same_bytes(graph, tmp_path, target):
    def build(out):
        if target == "onnx":
            return compile_onnx(graph, out)
        return compile_tvm(graph, out, target=target)

    _same(build(tmp_path / "first"), build(tmp_path / "elsewhere" / "second"))


@pytest.mark.parametrize("target", TARGETS)
def test_two_builds_in_two_processes_give_the_same_bytes(source, tmp_path, target):
    first = _compile(source, tmp_path / "first", target, seed=0)
    _same(first, _compile(source, tmp_path / "elsewhere" / "second", target, seed=1))
