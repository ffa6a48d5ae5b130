"""`import-gguf` on files made by llama.cpp's own quantizer (needs the irgraph[llama] extra).

An f32 GGUF of a tiny LLaMA (256-wide rows: whole k-quant super-blocks) is quantized by
llama.cpp's `llama_model_quantize` to q8_0, q4_0 and q4_K_M, then imported:

- every tensor: gguf's dequantization equals the import's weight bit for bit (q8_0 and q4_0
  files import exactly, their Q6_K output too; q4_K_M's Q4_K tensors need --dequantize);
- the interpreter on the import vs llama.cpp on the same function in f32 (the import's
  weights written back dequantized, f32 KV cache): max |logits diff| <= 1e-3 (measured ~5e-6);
- llama.cpp on the quantized file itself differs more, because its CPU matmuls quantize the
  activations to 8 bits (q8_0 / q8_K blocks) for integer dot products; that difference is
  measured (0.08-0.13 on logits up to ~4, x86) and bounded like tests/test_gguf_llama.py's
  quantized graphs (6% of the largest logit), and is the same with or without the import:
  llama.cpp on irgraph's re-export of a q8_0 import gives the file's logits exactly.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from irgraph import lm, model_zoo
from irgraph.codegen.gguf import compile_graph
from irgraph.errors import ConfigError
from irgraph.model_zoo.builder import build_graph
from irgraph.model_zoo.gguf_import import import_gguf
from tests.helpers.gguf_files import assert_dequantization_matches, float_copy

pytestmark = pytest.mark.llama
llama_cpp = pytest.importorskip("llama_cpp", reason="llama.cpp runs through irgraph[llama]")
gguf = pytest.importorskip("gguf")

FTYPES = {"q8_0": 7, "q4_0": 2, "q4_1": 3, "q4_k_m": 15}  # LLAMA_FTYPE_MOSTLY_*
_LOG = llama_cpp.llama_log_callback(lambda level, text, data: None)


def _quantize(src, out, ftype):
    llama_cpp.llama_log_set(_LOG, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
    assert rc == 0
    return out


def _logits(path, ids):
    """llama.cpp's logits for every position of `ids` (f32 KV cache, no flash attention)."""
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=64,
        n_batch=64,
        n_ubatch=64,
        logits_all=True,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
        flash_attn=False,
        verbose=False,
    )
    llm.eval([int(i) for i in ids])
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


@pytest.fixture(scope="module")
def f32_file(tmp_path_factory):
    cfg = model_zoo.config("llama-2", "tiny").replace(hidden=256, ffn=512, head_dim=64)
    graph = build_graph(cfg, weights="random")
    return compile_graph(graph, tmp_path_factory.mktemp("f32") / "a") / "model.gguf"


@pytest.mark.parametrize("ftype, dequantize", [("q8_0", False), ("q4_0", False), ("q4_k_m", True)])
def test_llama_cpp_quantized_files_import(f32_file, ftype, dequantize, tmp_path):
    path = _quantize(f32_file, tmp_path / f"{ftype}.gguf", ftype)
    types = {t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    imported = import_gguf(path, dequantize=dequantize)
    graph = imported.graph
    assert assert_dequantization_matches(path, graph) == len(graph.params)
    if not dequantize:
        assert imported.dequantized == {}
        assert {str(v.type.dtype) for v in graph.params.values()} >= {"i8"}
    else:
        assert "Q4_K" in types and imported.dequantized
        assert all(why == "Q4_K has no exact IR form" for why in imported.dequantized.values())
        assert any(v.type.quant is not None for v in graph.params.values())  # its Q6_K tensors

    ids = np.random.default_rng(0).integers(3, 256, 24)
    ours = lm.interpret(graph, ids[None])[0]
    same_function = compile_graph(float_copy(graph), tmp_path / "f32") / "model.gguf"
    assert np.abs(_logits(same_function, ids) - ours).max() <= 1e-3
    activation_error = np.abs(_logits(path, ids) - ours).max()
    assert activation_error <= 0.06 * np.abs(ours).max(), activation_error


def test_a_q8_0_import_exports_back_to_the_same_tensors(f32_file, tmp_path):
    path = _quantize(f32_file, tmp_path / "q8_0.gguf", "q8_0")
    again = compile_graph(import_gguf(path).graph, tmp_path / "again") / "model.gguf"
    theirs = {t.name: t for t in gguf.GGUFReader(path).tensors}
    ours = {t.name: t for t in gguf.GGUFReader(again).tensors}
    assert ours.keys() == theirs.keys()
    for name, t in theirs.items():
        assert ours[name].tensor_type == t.tensor_type, name
        assert ours[name].data.tobytes() == t.data.tobytes(), name
    ids = np.random.default_rng(1).integers(3, 256, 16)
    assert np.array_equal(_logits(again, ids), _logits(path, ids))


def test_llama_cpp_q4_1_needs_dequantize(f32_file, tmp_path):
    """llama.cpp's q4_1 stores each block's minimum: no integer zero point reproduces it."""
    path = _quantize(f32_file, tmp_path / "q4_1.gguf", "q4_1")
    with pytest.raises(ConfigError, match=r"Q4_1 whose minimum is no integer zero point"):
        import_gguf(path)
    graph = import_gguf(path, dequantize=True).graph
    assert_dequantization_matches(path, graph)


# GELU builders: ggml_gelu reads a table of f16 values at f16-rounded inputs (|x| < 10)
GELU = 3e-3
ARCHS = [
    "llama-3.1",
    "gpt-neox-20b",
    "falcon-7b",
    "falcon-40b",
    "bloom",
    "mt-nlg",
    "starcoder",
    "deepseek-v2",
]


def _ggml_gelu(self, x, approximate="none"):
    """ggml-cpu's ggml_vec_gelu_f32: f16(gelu_tanh(f16(x))) inside (-10, 10), else 0 or x."""
    from irgraph.activations import gelu

    x = np.asarray(x, np.float32)
    table = gelu(x.astype(np.float16).astype(np.float32), "tanh").astype(np.float16)
    return [np.where(x <= -10, 0, np.where(x >= 10, x, table)).astype(np.float32)]


@pytest.mark.parametrize("case", ARCHS)
def test_other_architectures_import_as_llama_cpp_runs_them(case, tmp_path, monkeypatch):
    """llama.cpp on the file vs the interpreter on its import (the writer's own graph is the
    same one: tests/test_gguf_import_archs.py): <= 1e-3 once the interpreter's GELU reads
    llama.cpp's f16 table too (measured 1e-5 - 2.6e-4); with the exact tanh GELU the GELU
    builders differ by 0.9 - 1.6e-3, all of it that table."""
    from irgraph.registry import get_op
    from tests.test_gguf_import_archs import CASES, _write

    arch, build, without = CASES[case]
    path = _write(build(), tmp_path / "a", without)
    graph = import_gguf(path).graph
    vocab = int(graph.params["embed.weight"].type.shape[0])
    ids = np.random.default_rng(0).integers(3, vocab, 24)
    theirs = _logits(path, ids)
    exact = np.abs(theirs - lm.interpret(graph, ids[None])[0]).max()
    assert exact <= (GELU if arch != "deepseek2" else 1e-3), (case, exact)
    monkeypatch.setattr(type(get_op("gelu")), "ref", _ggml_gelu)
    assert np.abs(theirs - lm.interpret(graph, ids[None])[0]).max() <= 1e-3


def test_a_llama_cpp_q8_0_gpt_neox_file_imports_exactly(tmp_path):
    """llama.cpp's quantizer on a GPT-NeoX file: its q8_0 attn_qkv rows split exactly."""
    cfg = model_zoo.config("gpt-neox-20b", "tiny").replace(hidden=256, ffn=512, head_dim=64)
    f32 = compile_graph(build_graph(cfg, weights="random"), tmp_path / "f32") / "model.gguf"
    path = _quantize(f32, tmp_path / "q8_0.gguf", "q8_0")
    imported = import_gguf(path)
    graph = imported.graph
    assert imported.dequantized == {}
    assert str(graph.params["layers.0.attn.k.weight"].type) == "i8<g32,sym,f16>[256, 256]"
    assert assert_dequantization_matches(path, graph) == len(gguf.GGUFReader(path).tensors)
    ids = np.random.default_rng(2).integers(3, 256, 24)
    ours = lm.interpret(graph, ids[None])[0]
    same_function = compile_graph(float_copy(graph), tmp_path / "back") / "model.gguf"
    assert np.abs(_logits(same_function, ids) - ours).max() <= GELU
