"""Per-stack settings of encoder-decoders (issue 18 item 7): AlphaCode's 1536-token encoder and
768-token decoder contexts, CodeT5+'s encoder rotating like CodeGen-350M (32 of 64 dims) while
its decoder rotates like CodeGen-16B (64 of 256). The encoder's rotation is checked against
transformers' CodeGen functions; both twins run through ONNX and TVM like the interpreter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.models.codegen import modeling_codegen

import irgraph
import irgraph.model_zoo as zoo
from irgraph import GraphBuilder, lm
from irgraph.codegen.onnx import compile_graph as compile_onnx
from irgraph.codegen.tvm.artifact import compile_graph as compile_tvm
from irgraph.errors import ConfigError
from irgraph.model_zoo.config import RotaryConfig
from irgraph.runtimes.onnx import ORTSession
from irgraph.runtimes.tvm import TVMSession

IDS = np.array([[5, 17, 99, 200, 3, 42], [9, 1, 14, 77, 3, 5]])
ENCODER_IDS = np.array([[7, 1, 12, 4, 30, 2, 8, 9], [3, 3, 40, 5, 6, 1, 2, 11]])


def _rotary_dims(graph: irgraph.Graph) -> dict[str, set[int]]:
    """rotary_dim of the encoder's and the decoder's rotary nodes (0 = the whole head)."""
    dims: dict[str, set[int]] = {"encoder": set(), "decoder": set()}
    for node in graph.nodes:
        if node.op == "rotary":
            width = node.arg(0).type.shape[3]
            stack = "encoder" if str(node.arg(0).type.shape[1]) == "enc_seq" else "decoder"
            dims[stack].add(node.attrs["rotary_dim"] or width)
    return dims


def test_alphacode_contexts():
    graph = zoo.build("alphacode", size="published", weights=False)
    assert graph.params["encoder.embed_positions.weight"].type.shape == (1536, 6144)
    assert graph.params["embed_positions.weight"].type.shape == (768, 6144)
    assert (graph.meta["encoder_max_position"], graph.meta["max_position"]) == (1536, 768)
    tiny = zoo.config("alphacode", "tiny")
    assert tiny.encoder_max_position > tiny.max_position  # the twin keeps the longer encoder


def test_codet5plus_encoder_rotates_like_codegen_350m():
    assert _rotary_dims(zoo.build("codet5plus", size="published", weights=False)) == {
        "encoder": {32},
        "decoder": {64},
    }
    assert _rotary_dims(zoo.build("codet5plus")) == {"encoder": {8}, "decoder": {4}}
    # the encoder's rotary attrs against CodeGen's own rotation (rotary_dim 32 of 64)
    node = next(
        n
        for n in zoo.build("codet5plus", size="published", weights=False).nodes
        if n.op == "rotary" and str(n.arg(0).type.shape[1]) == "enc_seq"
    )
    b = GraphBuilder("rot")
    out = b.rotary(b.input("x", "f32[2, 7, 3, 64]"), b.input("pos", "i64[2, 7]"), **node.attrs)
    b.output("y", out)
    x = np.random.default_rng(0).standard_normal((2, 7, 3, 64)).astype(np.float32)
    pos = np.array([[0, 1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8, 9]])
    got = irgraph.run(b.build({}), {"x": x, "pos": pos})["y"]
    sincos = modeling_codegen.create_sinusoidal_positions(16, 32)[torch.from_numpy(pos)]
    sin, cos = torch.split(sincos, 16, dim=-1)
    xt = torch.from_numpy(x)
    rot = modeling_codegen.apply_rotary_pos_emb(xt[..., :32], sin, cos)
    np.testing.assert_allclose(got, torch.cat([rot, xt[..., 32:]], -1).numpy(), atol=1e-5)


def test_encoder_settings_need_an_encoder():
    llama = zoo.config("llama-2")
    with pytest.raises(ConfigError, match="encoder_max_position"):
        llama.replace(encoder_max_position=4096).validate()
    with pytest.raises(ConfigError, match="encoder_rotary"):
        llama.replace(encoder_rotary=RotaryConfig(fraction=0.5)).validate()
    alphacode = zoo.config("alphacode")
    with pytest.raises(ConfigError, match="encoder_rotary"):  # learned positions, no rotary
        alphacode.replace(encoder_rotary=RotaryConfig(fraction=0.5)).validate()


@pytest.mark.parametrize("name", ["codet5plus", "alphacode"])
def test_twins_through_onnx_and_tvm(name, tmp_path):
    graph = zoo.build(name)
    ref = {d: lm.interpret(graph, IDS, decode=d, encoder_ids=ENCODER_IDS) for d in (False, True)}
    sessions = {"onnx-ort": ORTSession(compile_onnx(graph, tmp_path / "ort", flavour="ort"))}
    sessions["tvm-llvm"] = TVMSession(compile_tvm(graph, tmp_path / "tvm", target="tvm-llvm"))
    for backend, session in sessions.items():
        for decode, expected in ref.items():
            np.testing.assert_allclose(
                session.forward(IDS, decode=decode, encoder_ids=ENCODER_IDS),
                expected,
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{backend} decode={decode}",
            )
