"""W8A8 linears through ONNX (explicit per-token ops around MatMulInteger), TVM and torch
(issue 13): each equals the interpreter on the quantized graph, on a hand-made linear with ties
and a zero row, and on tiny LLaMA-2 (prefill and cached decode), SmoothQuant included."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

import irgraph
import irgraph.model_zoo as zoo
from irgraph import GraphBuilder, lm
from irgraph.codegen.onnx import compile_graph as compile_onnx
from irgraph.codegen.torch import numpy_runner, to_torch
from irgraph.codegen.tvm.artifact import compile_graph as compile_tvm
from irgraph.errors import CodegenError
from irgraph.interpreter import run
from irgraph.ir import Graph
from irgraph.passes import PassContext, run_pipeline
from irgraph.quant import SCALES
from irgraph.runtimes.onnx import ORTSession
from irgraph.runtimes.tvm import TVMSession

K, N = 24, 8


def _linear() -> tuple[Graph, np.ndarray]:
    """A W8A8 linear with bias, and inputs whose rows hit ties, a zero row and a tiny one."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("w8a8")
    x = b.input("x", f"f32[batch, seq, {K}]")
    w = b.param("w", f"i8<ch,sym,f16>[{N}, {K}]")
    bias = b.param("b", f"f32[{N}]")
    b.output("y", b.linear(x, w, bias, act_quant="i8_token", hint="y"))
    g = b.build(
        {
            "w": rng.integers(-127, 128, (N, K)).astype(np.int8),
            "w" + SCALES: rng.uniform(0.01, 0.02, (N, 1)).astype(np.float16),
            "b": rng.standard_normal(N).astype(np.float32),
        }
    )
    xs = rng.standard_normal((2, 4, K)).astype(np.float32) * 3
    xs[0, 0] = np.arange(K) - 11.5  # sx = 12.5 / 127: many values land near .5 steps
    xs[0, 1, :] = 0.0  # sx = 0
    xs[0, 2] = np.float32(127) * np.linspace(-1, 1, K)  # sx = 1: ±0.5 steps are exact ties
    xs[1, 3] *= 1e-30  # a tiny row: scales far below 1
    return g, xs


def test_hand_made_linear_on_every_backend(tmp_path):
    g, xs = _linear()
    want = run(g, {"x": xs})["y"]
    np.testing.assert_array_equal(
        want[0, 1], run(g, {"x": np.zeros((1, 1, K), np.float32)})["y"][0, 0]
    )
    for flavour in ("ort", "portable"):
        folder = compile_onnx(g, tmp_path / flavour, flavour=flavour)
        model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        ops = collections.Counter(n.op_type for n in model.graph.node)
        assert ops["MatMulInteger"] == 1 and ops["Round"] == 1 and "MatMul" not in ops, ops
        got = ORTSession(folder).run({"x": xs})["y"]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=flavour)
    got = TVMSession(compile_tvm(g, tmp_path / "tvm", target="tvm-llvm")).run({"x": xs})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg="tvm")
    got = numpy_runner(to_torch(g))({"x": xs})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg="torch")


def _calibration(vocab: int) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [rng.integers(1, vocab, (2, 12)) for _ in range(2)]


@pytest.fixture(scope="module")
def llama_w8a8() -> dict[str, Graph]:
    g = zoo.build("llama-2", size="tiny", seed=0)
    vocab = min(int(g.meta["vocab_size"]), 50)
    ctx = PassContext(calibration=_calibration(vocab))
    return {
        "w8a8": run_pipeline(g, "quantize(method=w8a8)").graph,
        "smoothquant+w8a8": run_pipeline(
            g, "smoothquant(alpha=0.5),quantize(method=w8a8)", ctx=ctx
        ).graph,
    }


def _ids() -> np.ndarray:
    return np.random.default_rng(0).integers(1, 50, (2, 5))


@pytest.mark.parametrize("variant", ["w8a8", "smoothquant+w8a8"])
def test_llama_through_onnx_matches_interpreter(llama_w8a8, variant, tmp_path):
    graph = llama_w8a8[variant]
    ids = _ids()
    marked = sum(n.op == "linear" and n.attrs["act_quant"] == "i8_token" for n in graph.nodes)
    for flavour in ("ort", "portable"):
        folder = compile_onnx(graph, tmp_path / flavour, flavour=flavour)
        model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        ops = collections.Counter(n.op_type for n in model.graph.node)
        # 2 layers x 7 linears; ONNX's default pipeline fuses q/k/v (and gate/up where narrow
        # enough), keeping act_quant: one MatMulInteger per compiled int8 linear
        compiled = irgraph.parse((folder / "graph.irg").read_text())
        fused = sum(n.op == "linear" and n.attrs["act_quant"] == "i8_token" for n in compiled.nodes)
        assert marked == 14 and fused < marked and ops["MatMulInteger"] == fused, ops
        session = ORTSession(folder)
        for decode in (False, True):
            np.testing.assert_allclose(
                session.forward(ids, decode=decode),
                lm.interpret(graph, ids, decode=decode),
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{variant} {flavour} decode={decode}",
            )


def test_llama_through_tvm_and_torch_matches_interpreter(llama_w8a8, tmp_path):
    graph = llama_w8a8["w8a8"]
    ids = _ids()
    session = TVMSession(compile_tvm(graph, tmp_path / "tvm", target="tvm-llvm"))
    stored = {a["name"] for a in session.manifest["tvm"]["weight_args"]}
    assert any(s.endswith(".scales") for s in stored)  # the int8 weights, not float copies
    module = to_torch(graph)
    for decode in (False, True):
        want = lm.interpret(graph, ids, decode=decode)
        np.testing.assert_allclose(
            session.forward(ids, decode=decode), want, rtol=1e-4, atol=1e-4, err_msg="tvm"
        )
        got = lm.forward(numpy_runner(module), lm.graph_inputs(graph), ids, decode=decode)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg="torch")


def test_gguf_refuses_w8a8_even_when_requantizing(llama_w8a8, tmp_path):
    pytest.importorskip("gguf")
    from irgraph.codegen.gguf import compile_graph as compile_gguf

    with pytest.raises(CodegenError, match=r"W8A8 linear .*has no llama\.cpp form"):
        compile_gguf(llama_w8a8["w8a8"], tmp_path / "g", requantize="q8_0")
    assert not (tmp_path / "g").exists()
