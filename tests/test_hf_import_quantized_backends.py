"""Quantized checkpoints made by the real tools compile to ONNX and TVM (issue 20 acceptance).

Each folder of tests/data/quantized/ (GPTQModel gptq v1 sym/asym 3/4/8 bit, AutoAWQ GEMM,
llm-compressor pack-quantized int4 sym/asym/actorder=weight, int3 asym and int8 per channel)
is imported and compiled with the default options; the artifact's cached decode must equal the
interpreter on the imported graph (<= 1e-4; measured 1.2-1.9e-6 on both backends).

The ONNX path is the exact one: the `ort` flavour at `accuracy_level=1` (the default), where
3- and 4-bit linears are MatMulNBits computing in fp32 from (q - z) * s and 8-bit ones are
dequantized by standard ops (MatMulNBits takes 8 bits only at level 4, which quantizes the
activations to int8 and is approximate). TVM dequantizes in Relax. ONNX runs every folder in
the default tier (about 0.1 s each); a TVM build takes about 3 s, so the default tier builds
one 4-bit and one 8-bit folder and the slow tier the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from irgraph import lm, runtimes
from irgraph.codegen.onnx import compile_graph as compile_onnx
from irgraph.codegen.tvm import compile_graph as compile_tvm
from irgraph.model_zoo.hf_import import import_hf

DATA = Path(__file__).parent / "data" / "quantized"
IDS = np.array(json.loads((DATA / "ids.json").read_text()))
TOLERANCE = 1e-4
FOLDERS = {  # folder -> bits of its quantized linears
    "awq-gemm-w4-g32": 4,
    "ct-w4-g32-actorder-weight": 4,
    "ct-w4-g32-asym": 4,
    "ct-w4-g32-sym": 4,
    "ct-w8-ch-sym": 8,
    "ct-w3-g32-asym": 3,
    "gptq-w4-g32-asym": 4,
    "gptq-w4-g32-sym": 4,
    "gptq-w8-g32-asym": 8,
    "gptq-w8-g32-sym": 8,
    "gptq-w3-g32-sym": 3,
    "gptq-w3-g32-asym": 3,
}
TVM_FAST = ("gptq-w4-g32-asym", "ct-w8-ch-sym")


def _matches_interpreter(name: str, artifact: Path) -> None:
    graph = import_hf(DATA / name)
    session = runtimes.open(artifact)
    for decode in (False, True):
        got = session.forward(IDS, decode=decode)
        want = lm.interpret(graph, IDS, decode=decode)
        diff = float(np.abs(got - want).max())
        assert diff <= TOLERANCE, (name, artifact.name, decode, diff)


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_imported_checkpoint_compiles_to_onnx_and_matches_interpreter(name, tmp_path):
    artifact = compile_onnx(import_hf(DATA / name), tmp_path / "onnx")  # ort, accuracy_level 1
    ops = {
        n.op_type for n in onnx.load(artifact / "model.onnx", load_external_data=False).graph.node
    }
    assert ("MatMulNBits" in ops) == (FOLDERS[name] < 8), ops  # 8 bits: dequantize + MatMul
    _matches_interpreter(name, artifact)


@pytest.mark.parametrize(
    "name",
    [n if n in TVM_FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(FOLDERS)],
)
def test_imported_checkpoint_compiles_to_tvm_and_matches_interpreter(name, tmp_path):
    artifact = compile_tvm(import_hf(DATA / name), tmp_path / "tvm")  # tvm-llvm
    _matches_interpreter(name, artifact)
