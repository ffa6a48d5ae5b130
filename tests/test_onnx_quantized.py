"""Quantized weights through ONNX (issue 13): the i4 layout is ORT MatMulNBits' layout, and
quantized graphs compile (MatMulNBits or explicit dequantize) to the interpreter's numbers.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import irgraph.model_zoo as zoo
from irgraph import GraphBuilder, lm
from irgraph.codegen.onnx import compile_graph
from irgraph.dtypes import DType
from irgraph.interpreter import run
from irgraph.ir import Graph
from irgraph.passes import run_pipeline
from irgraph.quant import SCALES, ZEROS, QuantSpec, choose_scales, quantize_arrays
from irgraph.runtimes.onnx import ORTSession


def _quantized_linear(spec: QuantSpec, n: int, k: int, bias: bool = False) -> Graph:
    rng = np.random.default_rng(spec.bits * 100 + spec.group)
    w = rng.standard_normal((n, k)).astype(np.float32)
    scales, zeros = choose_scales(w, spec)
    arrays = {"w" + s: a for s, a in quantize_arrays(w, spec, scales, zeros).items()}
    b = GraphBuilder("lin")
    x = b.input("x", f"f32[batch, seq, {k}]")
    wv = b.param("w", f"{spec.storage}<{spec}>[{n}, {k}]")
    bv = None
    if bias:
        bv = b.param("b", f"f32[{n}]")
        arrays["b"] = rng.standard_normal(n).astype(np.float32)
    b.output("y", b.linear(x, wv, bv, hint="y"))
    return b.build(arrays)


@pytest.mark.parametrize(
    "spec, k",
    [
        (QuantSpec(4, 32, True, DType.f16), 64),
        (QuantSpec(4, 16, False, DType.f32), 40),  # asymmetric, padded last block
        (QuantSpec(3, 16, True, DType.f16), 48),
    ],
)
def test_i4_layout_is_matmulnbits_layout(spec, k):
    """Repack by hand (unsigned nibbles = signed XOR 8, zero point 8) and let ORT compute."""
    n = 24
    g = _quantized_linear(spec, n, k)
    stored = g.stored("w")
    nb = spec.blocks(k)
    b = (np.asarray(stored[""]) ^ 0x88).reshape(n, nb, spec.group // 2)
    inits = [
        onnx.numpy_helper.from_array(b, "B"),
        onnx.numpy_helper.from_array(np.asarray(stored[SCALES], np.float32).reshape(-1), "S"),
    ]
    inputs = ["A", "B", "S"]
    if not spec.sym:
        z = np.asarray(stored[ZEROS]).astype(np.int16) + 8  # [n, nb], nb odd here: pad a nibble
        z = np.concatenate([z, np.zeros((n, nb % 2), np.int16)], axis=1).astype(np.uint8)
        packed = (z[:, 0::2] | (z[:, 1::2] << 4)).reshape(-1)
        inits.append(onnx.numpy_helper.from_array(packed, "Z"))
        inputs.append("Z")
    node = helper.make_node(
        "MatMulNBits",
        inputs,
        ["Y"],
        domain="com.microsoft",
        K=k,
        N=n,
        bits=4,
        block_size=spec.group,
    )
    graph = helper.make_graph(
        [node],
        "nbits",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [3, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, n])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    )
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, 3, k)).astype(np.float32)
    (got,) = sess.run(None, {"A": x[0]})
    np.testing.assert_allclose(got, run(g, {"x": x})["y"][0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "spec, k, uses_nbits",
    [
        (QuantSpec(4, 32, True, DType.f16), 64, True),
        (QuantSpec(4, 16, False, DType.f32), 40, True),
        (QuantSpec(8, 32, False, DType.f16), 64, False),  # 8 bits: MatMulNBits at level 4 only
        (QuantSpec(4, 0, True, DType.f16), 64, True),  # per channel: one block of K
        (QuantSpec(4, 0, False, DType.f16), 37, False),  # odd K: explicit dequantize
        (QuantSpec(3, 24, True, DType.f32), 40, False),  # not a power of two
    ],
)
def test_quantized_linear_compiles_to_the_interpreters_numbers(spec, k, uses_nbits, tmp_path):
    g = _quantized_linear(spec, 20, k, bias=True)
    x = np.random.default_rng(2).standard_normal((2, 3, k)).astype(np.float32)
    ref = run(g, {"x": x})["y"]
    for flavour in ("ort", "portable"):
        folder = compile_graph(g, tmp_path / flavour, flavour=flavour)
        model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        ops = collections.Counter(n.op_type for n in model.graph.node)
        assert ("MatMulNBits" in ops) == (uses_nbits and flavour == "ort"), ops
        sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        (got,) = sess.run(None, {"x": x})
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=flavour)


def _check_zoo(name: str, tmp_path) -> None:
    graph = run_pipeline(zoo.build(name, size="tiny", seed=0), "quantize(bits=4, group=32)").graph
    rng = np.random.default_rng(0)
    high = min(int(graph.meta.get("vocab_size", 32)), 50)
    ids = rng.integers(1, high, (2, 5))
    kw = {}
    if lm.is_encoder_decoder({n: v.type for n, v in graph.inputs.items()}):
        kw["encoder_ids"] = rng.integers(1, high, (2, 4))
    for flavour in ("ort", "portable"):
        session = ORTSession(compile_graph(graph, tmp_path / f"{name}-{flavour}", flavour=flavour))
        specs = session.manifest["quantization"]
        assert specs and set(specs.values()) <= {"i4<g32,sym,f16>", "i8<g32,sym,f16>"}
        for decode in (False, True):
            np.testing.assert_allclose(
                session.forward(ids, decode=decode, **kw),
                lm.interpret(graph, ids, decode=decode, **kw),
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{name} {flavour} decode={decode}",
            )


FAST = ["llama-2", "t5", "mixtral-8x22b"]


@pytest.mark.parametrize("name", FAST)
def test_quantized_zoo_model_matches_interpreter(name, tmp_path):
    _check_zoo(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(zoo.names()) - set(FAST)))
def test_every_quantized_zoo_model_matches_interpreter(name, tmp_path):
    _check_zoo(name, tmp_path)
