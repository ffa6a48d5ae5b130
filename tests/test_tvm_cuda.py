"""tvm-cuda builds without a GPU: every kernel is GPU-scheduled and nvcc compiles it for the arch.

Fast tier: tiny LLaMA-2 for sm_80 (the default arch). Slow tier (`pytest -m slow
tests/test_tvm_cuda.py`): tiny LLaMA-2 for sm_90, tiny Mixtral (MoE) and DeepSeek-v2 (MLA + MoE)
for sm_80 and sm_90, and the hand-built LLaMA and MLA/MoE/ALiBi/T5-bias graphs for both.
Running the artifacts needs a GPU: `irgraph.runtimes.open(artifact)` on a machine with CUDA
(see the manifest's `needs`).
"""

from __future__ import annotations

import os
import shutil

import pytest

from irgraph.codegen.tvm.artifact import compile_graph
from irgraph.codegen.tvm.targets import resolve
from irgraph.errors import CodegenError
from irgraph.runtimes import read_manifest
from tests.helpers.attention_lm import attention_lm
from tests.helpers.handbuilt import tiny_llama

needs_nvcc = pytest.mark.skipif(
    shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"),
    reason="nvcc not installed",
)


def _check(graph, tmp_path, arch):
    artifact = compile_graph(
        graph, tmp_path / f"{graph.name}-{arch}", target="tvm-cuda", cuda_arch=arch
    )
    manifest = read_manifest(artifact)
    info = manifest["tvm"]
    assert (
        manifest["target"] == "tvm-cuda" and info["cuda_arch"] == arch and info["device"] == "cuda"
    )
    assert info["target"]["kind"] == "cuda" and info["target"]["arch"] == arch
    assert info["cuda_kernels"]["kernels"] >= 10 and info["cuda_kernels"]["cubin_bytes"] > 0
    assert "GPU" in info["needs"] and arch in info["needs"]
    assert all(
        a["layout"] == "plain" for a in info["weight_args"]
    )  # GPU kernels read checkpoint layout


@needs_nvcc
@pytest.mark.parametrize("name, arch", [("llama-2", "sm_80")])
def test_zoo_cuda_kernels_compile_with_nvcc(tmp_path, name, arch):
    import irgraph.model_zoo as zoo

    _check(zoo.build(name, size="tiny", seed=0), tmp_path, arch)


@needs_nvcc
@pytest.mark.slow
@pytest.mark.parametrize(
    "name, arch",
    [
        ("llama-2", "sm_90"),
        ("mixtral-8x22b", "sm_80"),
        ("mixtral-8x22b", "sm_90"),
        ("deepseek-v2", "sm_80"),
        ("deepseek-v2", "sm_90"),
    ],
)
def test_more_zoo_cuda_kernels_compile_with_nvcc(tmp_path, name, arch):
    import irgraph.model_zoo as zoo

    _check(zoo.build(name, size="tiny", seed=0), tmp_path, arch)


@needs_nvcc
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_hand_built_llama_cuda_kernels_compile_with_nvcc(tmp_path, arch):
    _check(tiny_llama(), tmp_path, arch)


@needs_nvcc
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_mla_moe_cuda_kernels_compile_with_nvcc(tmp_path, arch):
    _check(attention_lm(), tmp_path, arch)


def test_unknown_cuda_arch_is_rejected():
    with pytest.raises(CodegenError, match="sm_80"):
        resolve("tvm-cuda", "sm_50")
