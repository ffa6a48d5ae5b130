"""ONNX codegen vs the reference interpreter: every op, both flavours, prefill and cached decode."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from irgraph import GraphBuilder, lm
from irgraph.codegen.lowering import LEGALIZE
from irgraph.codegen.onnx import build_model, compile_graph
from irgraph.codegen.onnx.lowerings import LOWERINGS
from irgraph.errors import CodegenError, ConfigError, RuntimeFailure
from irgraph.interpreter import run
from irgraph.registry import OPS
from irgraph.runtimes.onnx import ORTSession
from tests.helpers.handbuilt import tiny_llama
from tests.helpers.onnx_graphs import primitives, variant_decoder
from tests.helpers.torch_graphs import kitchen_sink

FLAVOURS = ["ort", "portable"]
IDS = np.array([[1, 5, 9, 3, 7, 11], [2, 4, 6, 8, 10, 12]])


def _session(graph, tmp_path, flavour, dtype="f32"):
    return ORTSession(
        compile_graph(
            graph, tmp_path / f"{graph.name}-{flavour}-{dtype}", flavour=flavour, dtype=dtype
        )
    )


def test_every_registered_op_has_a_lowering():
    # latent attention reaches ONNX rewritten by absorb-latent (codegen/lowering.py LEGALIZE)
    assert sorted(set(OPS) - set(LOWERINGS)) == sorted(LEGALIZE)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    "make", [tiny_llama, variant_decoder, kitchen_sink], ids=["llama", "variants", "sink"]
)
def test_decoders_match_interpreter(make, flavour, tmp_path):
    graph = make()
    session = _session(graph, tmp_path, flavour)
    for decode in (False, True):
        ref = lm.interpret(graph, IDS, decode=decode)
        np.testing.assert_allclose(
            session.forward(IDS, decode=decode),
            ref,
            rtol=1e-4,
            atol=1e-4,
            err_msg=f"decode={decode}",
        )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_padding_and_prefix_masks(flavour, tmp_path):
    graph = (
        kitchen_sink()
    )  # ALiBi, T5 bias, MLA and prefix-LM layers: all decomposed, so left padding works
    session = _session(graph, tmp_path, flavour)
    mask = np.array([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    kw = {"mask": mask, "prefix_len": np.array([3, 4])}
    np.testing.assert_allclose(
        session.forward(IDS, **kw), lm.interpret(graph, IDS, **kw), rtol=1e-4, atol=1e-4
    )
    assert session.left_padding


def test_ort_flavour_uses_fused_ops_where_they_fit(tmp_path):
    ops = _session(tiny_llama(), tmp_path, "ort").manifest["onnx"]["ops"]
    for op in ("GroupQueryAttention", "RotaryEmbedding", "SkipSimplifiedLayerNormalization"):
        assert f"com.microsoft:{op}" in ops
    sink = _session(kitchen_sink(), tmp_path, "ort").manifest["onnx"]["ops"]
    assert "com.microsoft:GroupQueryAttention" not in sink  # biases / prefix masks: decomposed
    portable = _session(tiny_llama(), tmp_path, "portable").manifest
    assert not any(op.startswith("com.microsoft") for op in portable["onnx"]["ops"])
    assert {"RMSNormalization", "RotaryEmbedding"} <= set(portable["onnx"]["ops"])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_primitive_ops(flavour, tmp_path):
    graph, feeds = primitives()
    ref = run(graph, feeds)
    got = _session(graph, tmp_path, flavour).run(feeds)
    assert set(got) == set(ref)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_float16(tmp_path):
    graph = tiny_llama()
    session = _session(graph, tmp_path, "ort", "f16")
    assert (
        onnx.load(str(session.folder / "model.onnx"), load_external_data=False)
        .graph.input[3]
        .type.tensor_type.elem_type
        == onnx.TensorProto.FLOAT16
    )
    ref = lm.interpret(graph, IDS, decode=True)
    np.testing.assert_allclose(session.forward(IDS, decode=True), ref, atol=3e-2)


def test_weights_are_external_and_checker_passes(tmp_path):
    art = compile_graph(tiny_llama(), tmp_path / "a")
    model = onnx.load(str(art / "model.onnx"), load_external_data=False)
    external = [
        t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    assert "embed.weight" in external and "lm_head.weight.T" in external
    assert "layers.0.qkv.weight.T" in external  # q/k/v as one MatMul
    assert "layers.0.gate.weight.T" in external  # gate/up stay apart: wider than MAX_FUSED_WIDTH
    onnx.checker.check_model(str(art / "model.onnx"), full_check=False)


def test_missing_lowering_names_op_and_target(monkeypatch):
    monkeypatch.delitem(LOWERINGS, "glu")
    with pytest.raises(CodegenError, match=r"no onnx lowering for op 'glu'"):
        build_model(tiny_llama())


def test_bad_options_and_weightless_graph(tmp_path):
    with pytest.raises(ConfigError, match="flavour"):
        compile_graph(tiny_llama(), tmp_path / "x", flavour="tensorrt")
    b = GraphBuilder("bare")
    b.output("y", b.relu(b.input("x", "f32[2]")))
    bare = b.build()
    bare.weights = None
    with pytest.raises(CodegenError, match="no weights"):
        build_model(bare)
    assert not (tmp_path / "x").exists()


def test_bfloat16_compiles_but_cpu_onnxruntime_refuses_it_by_file(tmp_path):
    art = compile_graph(tiny_llama(), tmp_path / "bf16", dtype="bf16")  # onnx.checker ran inside
    model = onnx.load(str(art / "model.onnx"), load_external_data=False)
    assert model.graph.input[3].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a CUDA provider may run bf16")
    with pytest.raises(
        RuntimeFailure, match=r"model\.onnx: onnxruntime cannot load the model.*MatMul"
    ):
        ORTSession(art)
