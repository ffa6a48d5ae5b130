"""`import-gguf` for every architecture the GGUF writer maps besides llama's basic form
(gguf-py only).

Writer -> importer gives the graph it started from, text and weights, for LLaMA-3's scaling
(a rope_freqs tensor), GPT-NeoX, Falcon (one norm, and Falcon-40B's two), BLOOM, GPT-2,
StarCoder and DeepSeek-V2, at f32 and with
q8_0 / q4_0 rows cut out of a fused attn_qkv tensor; what the writer adds and the importer
takes back out (zero biases, a tied head written twice) and what llama.cpp computes
differently (ggml_gelu is the tanh approximation) are checked by name; malformed
architecture keys are refused. tests/test_gguf_import_llama.py runs llama.cpp on the files.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from irgraph import lm, model_zoo
from irgraph.errors import ConfigError
from irgraph.model_zoo.builder import build_graph
from irgraph.model_zoo.config import Block, RotaryConfig
from irgraph.passes import run_pipeline
from tests.helpers.gguf_files import assert_dequantization_matches, rewrite

gguf = pytest.importorskip("gguf")
from irgraph.codegen.gguf import archs, compile_graph  # noqa: E402  (needs gguf)
from irgraph.model_zoo.gguf_import import import_gguf  # noqa: E402


def _read_arch(path):
    return gguf.GGUFReader(path).fields["general.architecture"].contents()


def _write(graph, folder, without=()):
    """`graph` as GGUF; `without`: writer rows skipped (to reach a later row, as a file
    llama.cpp's converter made for that architecture would)."""
    saved = archs.ARCHS
    archs.ARCHS = tuple(a for a in saved if a.name not in without)
    try:
        return compile_graph(graph, folder) / "model.gguf"
    finally:
        archs.ARCHS = saved


def _same_weights(a, b):
    for name in a.params:
        ours, theirs = a.stored(name), b.stored(name)
        assert ours.keys() == theirs.keys(), name
        for suffix, array in ours.items():
            assert np.asarray(array).tobytes() == np.asarray(theirs[suffix]).tobytes(), name


def falcon(two_norms: bool):
    """Falcon-7B's form (parallel block, one norm, multi-query) or Falcon-40B's (two norms,
    grouped KV), no projection biases, as zoo configs."""
    cfg = model_zoo.config("gpt-neox-20b", "tiny").replace(
        name="falcon-40b" if two_norms else "falcon-7b",
        kv_heads=2 if two_norms else 1,
        qkv_bias=False,
        out_bias=False,
        mlp_bias=False,
        tied_embeddings=True,
        block=Block.PARALLEL_TWO_NORMS if two_norms else Block.PARALLEL,
        rotary=RotaryConfig(),  # llama.cpp's Falcon rotates the whole head
    )
    return build_graph(cfg, weights="random", seed=3)


def deepseek_v2():
    """The DeepSeek-V2 twin routing over all experts at once (llama.cpp's grouped rule differs)."""
    cfg = model_zoo.config("deepseek-v2", "tiny")
    return build_graph(
        cfg.replace(moe=dataclasses.replace(cfg.moe, n_group=1, topk_group=1)), weights="random"
    )


CASES = {
    "llama-3.1": ("llama", lambda: model_zoo.build("llama-3.1"), ()),  # rope_freqs scaling
    "gpt-neox-20b": ("gptneox", lambda: model_zoo.build("gpt-neox-20b"), ()),
    "falcon-7b": ("falcon", lambda: falcon(False), ()),
    "falcon-40b": ("falcon", lambda: falcon(True), ("GPTNEOX",)),
    "bloom": ("bloom", lambda: model_zoo.build("bloom"), ()),
    "mt-nlg": ("gpt2", lambda: model_zoo.build("mt-nlg"), ()),
    "starcoder": ("starcoder", lambda: model_zoo.build("starcoder"), ()),
    "deepseek-v2": ("deepseek2", deepseek_v2, ()),
}


@pytest.mark.parametrize("case", CASES)
def test_writer_then_importer_is_the_same_graph(case, tmp_path):
    arch, build, without = CASES[case]
    graph = build()
    path = _write(graph, tmp_path / "a", without)
    assert _read_arch(path) == arch
    imported = import_gguf(path)
    assert str(imported.graph) == str(graph)
    _same_weights(graph, imported.graph)
    assert assert_dequantization_matches(path, imported.graph) == len(gguf.GGUFReader(path).tensors)


@pytest.mark.parametrize(
    "case, pipeline, ggml",
    [
        ("gpt-neox-20b", "quantize(method=rtn,bits=8,group=32)", "Q8_0"),
        ("starcoder", "quantize(method=rtn,bits=4,group=32)", "Q4_0"),  # 1 KV head: 16-row k, v
    ],
)
def test_quantized_rows_cut_from_fused_qkv_stay_exact(case, pipeline, ggml, tmp_path):
    graph = run_pipeline(CASES[case][1](), pipeline).graph
    path = _write(graph, tmp_path / "a")
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    assert tensors["blk.0.attn_qkv.weight"].tensor_type.name == ggml
    imported = import_gguf(path)
    assert imported.dequantized == {}
    assert str(imported.graph) == str(graph)
    _same_weights(graph, imported.graph)
    assert_dequantization_matches(path, imported.graph)


def test_what_the_writer_adds_comes_back_out(tmp_path):
    """Galactica has no biases and a tied head; GPT-2's builder requires biases (zeros are
    written) and GPT-NeoX's an output tensor (the embedding is written twice)."""
    galactica = model_zoo.build("galactica")
    path = _write(galactica, tmp_path / "g")
    names = {t.name for t in gguf.GGUFReader(path).tensors}
    assert {"blk.0.attn_qkv.bias", "blk.0.attn_norm.bias", "output_norm.bias"} <= names
    imported = import_gguf(path).graph
    assert not any(n.endswith(".bias") for n in imported.params)
    assert "lm_head.weight" not in imported.params

    cfg = model_zoo.config("gpt-neox-20b", "tiny").replace(tied_embeddings=True)
    neox = build_graph(cfg, weights="random")
    path = _write(neox, tmp_path / "n")
    assert "output.weight" in {t.name for t in gguf.GGUFReader(path).tensors}
    back = import_gguf(path).graph
    assert str(back) == str(neox) and "lm_head.weight" not in back.params


def test_gelu_comes_back_as_the_tanh_approximation_llama_cpp_computes(tmp_path):
    """The GPT-2 row takes exact-erf GELU graphs too (within llama.cpp's own f16 GELU error);
    the import says what llama.cpp computes: ggml_gelu, the tanh form."""
    graph = model_zoo.build("hyperclova")  # gelu (erf)
    imported = import_gguf(_write(graph, tmp_path / "a")).graph
    ours, theirs = str(graph).splitlines(), str(imported).splitlines()
    changed = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    assert len(changed) == sum("= gelu(" in a for a in ours) == 2 and all(
        b == a + ' {approximate="tanh"}' for a, b in changed
    )
    ids = np.random.default_rng(0).integers(3, 200, (1, 12))
    assert np.abs(lm.interpret(graph, ids) - lm.interpret(imported, ids)).max() < 2e-3


def test_malformed_architecture_files_are_refused_by_name(tmp_path):
    neox = _write(model_zoo.build("gpt-neox-20b"), tmp_path / "neox")
    qkv = next(t for t in gguf.GGUFReader(neox).tensors if t.name == "blk.0.attn_qkv.weight")
    cut = np.ascontiguousarray(qkv.data[:-16])  # 176 rows: not q, k and v of 4 + 2 * 4 heads
    path = rewrite(neox, tmp_path / "qkv.gguf", tensors={qkv.name: (cut, "F32")})
    with pytest.raises(ConfigError, match=r"'blk.0.attn_qkv.weight' has 176 rows: not q, k"):
        import_gguf(path)

    bloom = _write(model_zoo.build("bloom"), tmp_path / "bloom")
    alibi = {"bloom.attention.max_alibi_bias": (4.0, gguf.GGUFValueType.FLOAT32)}
    with pytest.raises(ConfigError, match=r"max_alibi_bias: the IR's ALiBi slopes use 8"):
        import_gguf(rewrite(bloom, tmp_path / "alibi.gguf", meta=alibi))

    gpt2 = _write(model_zoo.build("mt-nlg"), tmp_path / "gpt2")
    context = {"gpt2.context_length": (4096, gguf.GGUFValueType.UINT32)}
    with pytest.raises(ConfigError, match=r"context_length exceeds the position table's rows"):
        import_gguf(rewrite(gpt2, tmp_path / "ctx.gguf", meta=context))

    deepseek = _write(deepseek_v2(), tmp_path / "ds")
    groups = {"deepseek2.expert_group_count": (4, gguf.GGUFValueType.UINT32)}
    with pytest.raises(ConfigError, match=r"expert_group_count: llama.cpp ranks groups"):
        import_gguf(rewrite(deepseek, tmp_path / "groups.gguf", meta=groups))


@pytest.mark.parametrize(
    "factor, original, low, high",
    [(8.0, 8192, 1.0, 4.0), (32.0, 8192, 1.0, 4.0), (8.0, 8192, 1.0, 6.0), (16.0, 4096, 2.0, 8.0)],
)
def test_llama3_scaling_is_solved_from_published_sized_divisors(factor, original, low, high):
    """128-wide heads (LLaMA-3.1 8B: factor 8; 3.2 1B: 32). low_freq_factor is not determined
    by the divisors: low 2 / original 4096 comes back as low 1 / original 2048, the same rule."""
    from irgraph.model_zoo.gguf_import.rope_freqs import llama3_scaling
    from irgraph.ops.rotary import inv_frequencies

    rule = dict(factor=factor, original_max_position=original)
    rule.update(low_freq_factor=low, high_freq_factor=high)
    plain = inv_frequencies(128, 500000.0)
    divisors = (plain / inv_frequencies(128, 500000.0, scaling="llama3", **rule)).astype(np.float32)
    got = llama3_scaling(divisors, 128, 500000.0, "f.gguf")
    assert got == dict(
        scaling="llama3",
        factor=factor,
        original_max_position=original // int(low),
        low_freq_factor=1.0,
        high_freq_factor=high / low,
    )


def test_rope_freqs_that_follow_no_llama3_rule_are_refused(tmp_path):
    from irgraph.model_zoo.gguf_import.rope_freqs import llama3_scaling

    with pytest.raises(ConfigError, match=r"f.gguf: rope_freqs follows no LLaMA-3 scaling rule"):
        llama3_scaling(np.linspace(1, 8, 64, dtype=np.float32) ** 1.5, 128, 500000.0, "f.gguf")
    with pytest.raises(ConfigError, match=r"must hold 64 divisors >= 1"):
        llama3_scaling(np.full(64, 0.5, np.float32), 128, 500000.0, "f.gguf")
    path = _write(model_zoo.build("llama-3.1"), tmp_path / "a")
    both = {"llama.rope.scaling.type": ("linear", gguf.GGUFValueType.STRING)}
    with pytest.raises(ConfigError, match=r"a rope_freqs tensor and llama.rope.scaling.type"):
        import_gguf(rewrite(path, tmp_path / "both.gguf", meta=both))


@pytest.mark.parametrize(
    "case, pipeline, backend",
    [
        ("llama-3.1", "quantize(method=rtn,bits=4,group=32)", "onnx"),  # q4_0 -> MatMulNBits
        ("gpt-neox-20b", "quantize(method=rtn,bits=8,group=32)", "onnx"),  # q8_0, split rows
        ("starcoder", "quantize(method=rtn,bits=4,group=32)", "onnx"),
        ("deepseek-v2", "quantize(method=rtn,bits=8,group=32)", "onnx"),
        ("gpt-neox-20b", "quantize(method=rtn,bits=4,group=32)", "tvm"),
        pytest.param(
            "bloom", "quantize(method=rtn,bits=8,group=32)", "tvm", marks=pytest.mark.slow
        ),
    ],
)
def test_quantized_imports_compile_and_match_the_interpreter(case, pipeline, backend, tmp_path):
    """A quantized GGUF import compiles like any graph (exact paths: ONNX at accuracy_level 1,
    TVM dequantizing in Relax): cached decode equal to the interpreter on the import <= 1e-4."""
    from irgraph import runtimes
    from irgraph.codegen.onnx import compile_graph as compile_onnx
    from irgraph.codegen.tvm import compile_graph as compile_tvm

    arch, build, without = CASES[case]
    path = _write(run_pipeline(build(), pipeline).graph, tmp_path / "gguf", without)
    graph = import_gguf(path).graph
    assert any(v.type.quant is not None for v in graph.params.values())
    compile_ = compile_onnx if backend == "onnx" else compile_tvm
    session = runtimes.open(compile_(graph, tmp_path / backend))
    ids = np.random.default_rng(0).integers(3, 200, (1, 10))
    for decode in (False, True):
        got, want = session.forward(ids, decode=decode), lm.interpret(graph, ids, decode=decode)
        assert np.abs(got - want).max() <= 1e-4, (case, decode)
