"""Quantized ONNX kernels (issue 15): GatherBlockQuantized tables and MatMulNBits accuracy levels.

A quantized embedding table (ort flavour, power-of-two group >= 16) stays packed and is read by
one GatherBlockQuantized, exactly the interpreter's numbers. MatMulNBits runs at accuracy_level
1 (fp32, exact) by default; 4 quantizes activations per block to int8: its error against the
interpreter is bounded here (benchmarks/decode.py compares the speed).
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from irgraph import GraphBuilder
from irgraph.codegen.onnx import compile_graph
from irgraph.dtypes import DType
from irgraph.errors import ConfigError
from irgraph.interpreter import run
from irgraph.ir import Graph
from irgraph.quant import QuantSpec, choose_scales, quantize_arrays


def _quantized(name: str, spec: QuantSpec, shape: tuple[int, int], seed: int) -> dict:
    w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    scales, zeros = choose_scales(w, spec)
    return {name + s: a for s, a in quantize_arrays(w, spec, scales, zeros).items()}


def _table_and_linear(spec: QuantSpec, vocab: int, k: int, n: int) -> Graph:
    """ids -> quantized embedding [vocab, k] -> quantized linear [n, k] -> y; also the rows."""
    b = GraphBuilder("table-linear")
    ids = b.input("ids", "i64[batch, seq]")
    table = b.param("table", f"{spec.storage}<{spec}>[{vocab}, {k}]")
    w = b.param("w", f"{spec.storage}<{spec}>[{n}, {k}]")
    rows = b.embedding(ids, table, hint="rows")
    b.output("rows", rows)
    b.output("y", b.linear(rows, w, hint="y"))
    return b.build({**_quantized("table", spec, (vocab, k), 1), **_quantized("w", spec, (n, k), 2)})


def _session(folder) -> tuple[ort.InferenceSession, collections.Counter, list]:
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess, ops, nbits


@pytest.mark.parametrize(
    "spec, k",
    [
        (QuantSpec(4, 32, True, DType.f16), 64),
        (QuantSpec(4, 16, False, DType.f32), 40),  # asymmetric, padded last group (sliced off)
        (QuantSpec(8, 32, False, DType.f16), 64),
        (QuantSpec(3, 0, True, DType.f32), 32),  # 3 bits as 4, per channel
    ],
)
def test_quantized_table_is_one_gather_block_quantized(spec, k, tmp_path):
    g = _table_and_linear(spec, 50, k, 24)
    ids = np.random.default_rng(3).integers(0, 50, (2, 7))
    want = run(g, {"ids": ids})
    sess, ops, nbits = _session(compile_graph(g, tmp_path / "a", default_passes=False))
    assert ops["GatherBlockQuantized"] == 1 and "Gather" not in ops, ops
    levels = [a.i for n in nbits for a in n.attribute if a.name == "accuracy_level"]
    assert levels == ([1] if spec.bits < 8 else [])  # 8 bits at level 1: dequantized, folded
    rows, y = sess.run(["rows", "y"], {"ids": ids})
    np.testing.assert_allclose(rows, want["rows"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(y, want["y"], rtol=1e-5, atol=1e-5)


def test_accuracy_level_4_runs_int8_activations_within_its_error(tmp_path):
    spec = QuantSpec(4, 32, True, DType.f16)
    g = _table_and_linear(spec, 50, 256, 64)
    ids = np.random.default_rng(3).integers(0, 50, (2, 9))
    want = run(g, {"ids": ids})["y"]
    errors = {}
    for level in (1, 4):
        folder = compile_graph(g, tmp_path / str(level), default_passes=False, accuracy_level=level)
        sess, _, nbits = _session(folder)
        assert [a.i for a in nbits[0].attribute if a.name == "accuracy_level"] == [level]
        (y,) = sess.run(["y"], {"ids": ids})
        errors[level] = float(np.abs(y - want).max() / np.abs(want).max())
    assert errors[1] < 1e-6
    assert 1e-6 < errors[4] < 2e-2, errors  # int8 activations: measurably approximate, bounded


def test_unknown_accuracy_level_is_refused(tmp_path):
    g = _table_and_linear(QuantSpec(4, 32, True, DType.f16), 50, 64, 8)
    with pytest.raises(ConfigError, match="accuracy_level"):
        compile_graph(g, tmp_path / "x", accuracy_level=2)
    assert not (tmp_path / "x").exists()


def test_quantized_llama_manifest_and_genai_tokens(tmp_path):
    """Tiny LLaMA-2 at int4 g32: the manifest names each weight's op; genai's greedy = ours."""
    import onnxruntime_genai as og

    import irgraph.model_zoo as zoo
    from irgraph.passes import run_pipeline
    from irgraph.runtimes.onnx import ORTSession

    graph = run_pipeline(zoo.build("llama-2", size="tiny", seed=0), "quantize(bits=4, group=32)")
    art = compile_graph(graph.graph, tmp_path / "llama")
    session = ORTSession(art)
    info = session.manifest["onnx"]
    assert info["accuracy_level"] == 1
    quantized = session.manifest["quantization"]
    assert set(info["quantized"]) == set(quantized)  # every quantized weight, each one op
    tables = [n for n, ops in info["quantized"].items() if ops == ["GatherBlockQuantized"]]
    assert len(tables) == 1 and quantized[tables[0]].startswith("i4<g32")
    for name, ops in info["quantized"].items():  # 8-bit (the LM head): dequantized at level 1
        if name not in tables:
            assert ops == (["MatMulNBits"] if quantized[name].startswith("i4") else ["dequantized"])
    prompt = [1, 5, 9, 3]
    ours = session.generate([prompt], 8)[0]
    model = og.Model(str(art))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + 8, min_length=len(prompt) + 8)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    theirs = []
    while not generator.is_done():
        generator.generate_next_token()
        theirs.append(int(generator.get_next_tokens()[0]))
    assert theirs == ours
