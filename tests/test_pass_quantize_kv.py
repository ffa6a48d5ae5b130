"""quantize-kv: the KV cache stored in int8 / fp8 with scales, read dequantized by attention.

The interpreter defines it (irgraph/ops/kv_quant.py); prefill and cached decode see the same
dequantized keys, ONNX and TVM (int8 and fp8) match the interpreter on the rewritten graph,
and the cost model counts the stored bytes.
"""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import PassError
from irgraph.analysis import kv_bytes_per_token
from irgraph.kvcache import manifest_entry
from irgraph.lm import graph_inputs, interpret
from irgraph.passes import PassContext, run_pipeline
from irgraph.runtimes.interpreter import InterpreterSession
from tests.helpers.handbuilt import HEAD_DIM, KV_HEADS, tiny_llama

IDS = np.random.default_rng(0).integers(0, 64, size=(2, 9))
PROMPTS = [[5, 6, 7, 8], [9, 10]]


def quantized(g, options: str = "", **ctx):
    spec = f"quantize-kv({options})" if options else "quantize-kv"
    result = run_pipeline(g, spec, check=True, check_steps=16, ctx=PassContext(**ctx))
    (record,) = result.records
    assert record.modified and record.kind == "approximate"
    assert record.max_error is not None and 0 < record.max_error < 0.2  # reported, not bounded
    return result.graph


@pytest.mark.parametrize(
    "options, heads, error",
    [
        ("", KV_HEADS, 0.05),  # logits are O(1): int8 keeps ~2 decimal digits
        ("granularity=per-token", 1, 0.05),
        ("dtype=fp8_e4m3", KV_HEADS, 0.25),  # 3 mantissa bits
    ],
)
def test_cache_types_scales_and_prefill_equals_decode(options, heads, error):
    g = tiny_llama()
    q = quantized(g, options)
    dtype = "f8e4m3" if "fp8" in options else "i8"
    text = str(q)
    assert f"input %past_key_values.0.key: {dtype}[batch, {KV_HEADS}, past, {HEAD_DIM}]" in text
    assert f"input %past_key_values.1.value_scale: f32[batch, {heads}, past, 1]" in text
    assert str(q.outputs["present.0.key_scale"].type) == f"f32[batch, {heads}, past+seq, 1]"
    assert list(q.outputs)[:2] == ["present.0.key", "present.0.key_scale"]
    entry = manifest_entry(q.meta, graph_inputs(q))
    assert entry["dtypes"] == [dtype] and "past_key_values.0.key_scale" not in entry["seq_axis"]
    prefill, decode = interpret(q, IDS), interpret(q, IDS, decode=True)
    np.testing.assert_allclose(decode, prefill, atol=1e-5)  # the current token reads it dequantized
    assert 0 < np.abs(decode - interpret(g, IDS, decode=True)).max() < error


def test_bytes_per_token_are_a_quarter_plus_scales():
    g = tiny_llama()
    layers = 2
    f32 = kv_bytes_per_token(g, None)
    assert f32 == layers * 2 * KV_HEADS * HEAD_DIM * 4
    per_head = kv_bytes_per_token(quantized(g), None)
    assert per_head == f32 // 4 + layers * 2 * KV_HEADS * 4
    per_token = kv_bytes_per_token(quantized(g, "granularity=per-token"), None)
    assert per_token == f32 // 4 + layers * 2 * 4
    assert kv_bytes_per_token(quantized(g)) == kv_bytes_per_token(g)  # the zoo's 16-bit rule


def test_per_channel_scales_are_calibrated_parameters():
    g = tiny_llama()
    with pytest.raises(PassError, match="needs calibration data"):
        run_pipeline(g, "quantize-kv(granularity=per-channel)")
    calib = [np.random.default_rng(1).integers(0, 64, size=(2, 16))]
    q = quantized(g, "granularity=per-channel", calibration=calib)
    assert not any(n.endswith("_scale") for n in q.inputs)  # no scale cache: one static scale
    scale = np.asarray(q.weight("kv_cache.0.key_scale"))
    assert scale.shape == (1, KV_HEADS, 1, HEAD_DIM) and (scale > 0).all()
    assert kv_bytes_per_token(q, None) == kv_bytes_per_token(g, None) // 4
    np.testing.assert_allclose(interpret(q, IDS, decode=True), interpret(q, IDS), atol=1e-5)


def test_generate_drives_the_quantized_cache(tmp_path):
    from irgraph.serialize import load

    g = tiny_llama()
    q = quantized(g, "dtype=fp8_e4m3")
    q.save(tmp_path / "q")
    assert str(load(tmp_path / "q")) == str(q)
    got = InterpreterSession(q).generate(PROMPTS, 6)
    assert [len(r) for r in got] == [6, 6]
    assert InterpreterSession(q).generate(PROMPTS, 6) == got  # deterministic


@pytest.mark.parametrize("options", ["", "dtype=fp8_e4m3, granularity=per-token"])
def test_onnx_matches_the_interpreter(options, tmp_path):
    from irgraph.codegen.onnx import compile_graph
    from irgraph.runtimes.onnx import ORTSession

    q = quantized(tiny_llama(), options)
    session = ORTSession(compile_graph(q, tmp_path / "onnx"))
    for decode in (False, True):
        np.testing.assert_allclose(
            session.forward(IDS, decode=decode), interpret(q, IDS, decode=decode), atol=1e-4
        )
    assert session.generate(PROMPTS, 5) == InterpreterSession(q).generate(PROMPTS, 5)


@pytest.mark.parametrize("options", ["", "dtype=fp8_e4m3, granularity=per-token"])
def test_tvm_matches_the_interpreter(options, tmp_path):
    from irgraph.codegen.tvm import compile_graph
    from irgraph.runtimes.tvm import TVMSession

    q = quantized(tiny_llama(), options)
    session = TVMSession(compile_graph(q, tmp_path / "tvm"))
    np.testing.assert_allclose(
        session.forward(IDS, decode=True), interpret(q, IDS, decode=True), atol=1e-4
    )
    assert session.generate(PROMPTS, 5) == InterpreterSession(q).generate(PROMPTS, 5)


def test_graphs_it_does_not_apply_to_say_why():
    (record,) = run_pipeline(zoo.build("deepseek-v2"), "quantize-kv").records
    assert not record.modified and "latent cache" in record.note
    q = quantized(tiny_llama())
    with pytest.raises(PassError, match="already quantized"):
        run_pipeline(q, "quantize-kv")
    bsnh = run_pipeline(tiny_llama(), "kv-layout(layout=bsnh)").graph
    with pytest.raises(PassError, match="quantize-kv rewrites a bnsh cache"):
        run_pipeline(bsnh, "quantize-kv")
    with pytest.raises(PassError, match="option 'dtype' of pass quantize-kv"):
        run_pipeline(tiny_llama(), "quantize-kv(dtype=int4)")
