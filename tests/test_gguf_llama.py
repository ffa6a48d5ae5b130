"""llama.cpp on irgraph's GGUF files vs the interpreter (needs the irgraph[llama] extra).

f32 files, KV cache in f32, flash attention off: logits within 1e-3 of the interpreter for a
prefill and for 16 decode steps through llama.cpp's cache, and greedy tokens equal. Quantized
graphs: q8_0 / q4_0 weights are the IR's bit for bit, so the difference left is llama.cpp's
int8 quantization of the activations (its q8 dot products), measured and bounded here.
"""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.runtimes
from irgraph import lm, model_zoo
from irgraph.codegen.gguf import compile_graph
from irgraph.passes import run_pipeline
from irgraph.runtimes.interpreter import InterpreterSession

pytestmark = pytest.mark.llama
pytest.importorskip("llama_cpp", reason="llama.cpp runs through the irgraph[llama] extra")

PROMPT, STEPS = 8, 16
# (zoo twin, llama.cpp architecture its structure maps to, logits tolerance). GELU builders:
# ggml_gelu reads an f16 table (its input rounded to f16), measured up to 1.44e-3 on these
# twins (StarCoder, GPT-NeoX; BLOOM 8.8e-4) with llama.cpp built for aarch64 under qemu.
GELU = 3e-3
TWINS = [
    ("llama-2", "llama", 1e-3),
    ("mixtral", "llama", 1e-3),
    ("gpt-neox-20b", "gptneox", GELU),
    ("bloom", "bloom", GELU),
    ("starcoder", "starcoder", GELU),
    ("hyperclova", "gpt2", GELU),
]


def _ids(graph, rows, seq, seed=0):
    vocab = int(graph.params["embed.weight"].type.shape[0])
    return np.random.default_rng(seed).integers(3, vocab, (rows, seq))


def _max_err(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@pytest.mark.parametrize("name, arch, tolerance", TWINS)
def test_f32_matches_the_interpreter(name, arch, tolerance, tmp_path):
    graph = model_zoo.build(name, size="tiny", seed=0)
    folder = compile_graph(graph, tmp_path / "a")
    session = irgraph.runtimes.open(folder)
    assert session.manifest["gguf"]["architecture"] == arch
    ids = _ids(graph, 2, PROMPT + STEPS)
    prefill = _max_err(session.forward(ids[:, :PROMPT]), lm.interpret(graph, ids[:, :PROMPT]))
    decode = _max_err(session.forward(ids, decode=True), lm.interpret(graph, ids, decode=True))
    assert prefill <= tolerance and decode <= tolerance, (prefill, decode)
    prompts = [list(ids[0, :PROMPT]), list(ids[1, : PROMPT - 3])]  # two lengths: two lanes
    assert session.generate(prompts, STEPS) == InterpreterSession(graph).generate(prompts, STEPS)


def test_deepseek_v2_latent_attention_matches_the_interpreter(tmp_path):
    import dataclasses

    from irgraph.model_zoo.builder import build_graph

    cfg = model_zoo.config("deepseek-v2", "tiny")
    cfg = cfg.replace(moe=dataclasses.replace(cfg.moe, n_group=1, topk_group=1))
    graph = build_graph(cfg, weights="random")
    session = irgraph.runtimes.open(compile_graph(graph, tmp_path / "a"))
    assert session.manifest["gguf"]["architecture"] == "deepseek2"
    ids = _ids(graph, 1, PROMPT + STEPS)
    assert (
        _max_err(session.forward(ids, decode=True), lm.interpret(graph, ids, decode=True)) <= 1e-3
    )
    prompt = [list(ids[0, :PROMPT])]
    assert session.generate(prompt, STEPS) == InterpreterSession(graph).generate(prompt, STEPS)


@pytest.mark.parametrize(
    "case, arch, tolerance",
    [("llama", "llama", 1e-3), ("falcon-7b", "falcon", GELU), ("falcon-40b", "gptneox", GELU)],
)
def test_hf_imports_match_the_interpreter(case, arch, tolerance, tmp_path):
    from irgraph.model_zoo.hf_import import import_hf
    from tests.helpers.hf_tiny import make_model, save_model

    graph = import_hf(save_model(make_model(case), tmp_path / "hf"))
    session = irgraph.runtimes.open(compile_graph(graph, tmp_path / "a"))
    assert session.manifest["gguf"]["architecture"] == arch
    ids = _ids(graph, 1, PROMPT + STEPS)
    got, ref = session.forward(ids, decode=True), lm.interpret(graph, ids, decode=True)
    assert _max_err(got, ref) <= tolerance
    prompt = [list(ids[0, :PROMPT])]
    assert session.generate(prompt, STEPS) == InterpreterSession(graph).generate(prompt, STEPS)


def test_run_takes_prefill_feeds_and_refuses_padding(tmp_path):
    graph = model_zoo.build("llama-2", size="tiny", seed=0)
    session = irgraph.runtimes.open(compile_graph(graph, tmp_path / "a"))
    ids = _ids(graph, 1, 5)
    feeds = lm.make_feeds(session.inputs, ids, lm.empty_cache(session.inputs, 1), past_len=0)
    np.testing.assert_allclose(session.run(feeds)["logits"], lm.interpret(graph, ids), atol=1e-3)
    with pytest.raises(irgraph.errors.RuntimeFailure, match="no padding"):
        session.forward(ids, mask=np.array([[0, 1, 1, 1, 1]]))


# q8_0 / q4_0 weights are the IR's bit for bit (test_gguf_codegen); what is left is llama.cpp
# quantizing the activations to q8_0 blocks for its integer dot products. Measured on the tiny
# LLaMA-2 twin (llama.cpp built for aarch64, under qemu): max |logit error| 0.130 for q8_0 and
# 0.097 for q4_0, 3.5% and 2.5% of the largest logit; the bound is 6%.
@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_graph_within_the_int8_activation_error(bits, tmp_path):
    graph = run_pipeline(
        model_zoo.build("llama-2", size="tiny", seed=0),
        f"quantize(method=rtn,bits={bits},group=32)",
    ).graph
    session = irgraph.runtimes.open(compile_graph(graph, tmp_path / "a"))
    ids = _ids(graph, 1, PROMPT)
    ref = lm.interpret(graph, ids)
    err = _max_err(session.forward(ids), ref)
    assert err <= 0.06 * float(np.abs(ref).max()), err


def test_k_quants_through_llama_cpp_quantizer(tmp_path):
    """llama.cpp's quantizer on the f32 file: every k-quant tensor type as asked, and the error
    against the float interpreter falls with the bits, q4_0 > q4_k_m > q5_k_m > q6_k (the
    ordering llama.cpp publishes). Random weights at 4 bits are far from the float function:
    measured on x86 (AVX-512) relative to the largest logit, q4_0 0.27, q4_k_m 0.22, q5_k_m
    0.09, q6_k 0.05, so the ordering, not one bound, is what is checked."""
    import gguf

    from irgraph.model_zoo.builder import build_graph

    # 256-wide rows: whole k-quant super-blocks
    cfg = model_zoo.config("llama-2", "tiny").replace(hidden=256, ffn=512, head_dim=64)
    graph = build_graph(cfg, weights="random")
    ids = _ids(graph, 1, PROMPT)
    ref = lm.interpret(graph, ids)
    errors = {}
    for requantize in ("q4_0", "q4_k_m", "q5_k_m", "q6_k"):
        folder = compile_graph(graph, tmp_path / requantize, requantize=requantize)
        if requantize != "q4_0":
            tensors = gguf.GGUFReader(folder / "model.gguf").tensors
            types = {t.name: t.tensor_type.name for t in tensors}
            assert types["blk.0.attn_q.weight"] in ("Q4_K", "Q5_K", "Q6_K")
            assert not (folder / "model.gguf.f32").exists()
        errors[requantize] = _max_err(irgraph.runtimes.open(folder).forward(ids), ref)
    assert errors["q4_0"] > errors["q4_k_m"] > errors["q5_k_m"] > errors["q6_k"] > 0, errors
    assert errors["q6_k"] <= 0.1 * float(np.abs(ref).max()), errors


def test_llama_cpp_own_q4_0_mix_keeps_the_head_at_q6_k(tmp_path):
    """--requantize llama-q4_0: llama-quantize's Q4_0 file (output.weight q6_K, token_embd and
    every block matrix q4_0); gguf-py's q4_0 quantizes the head to q4_0 as well."""
    import gguf

    from irgraph.model_zoo.builder import build_graph

    cfg = model_zoo.config("llama-2", "tiny").replace(hidden=256, ffn=512, head_dim=64)
    graph = build_graph(cfg, weights="random")
    ids = _ids(graph, 1, PROMPT)
    ref = lm.interpret(graph, ids)
    for requantize, head in (("llama-q4_0", "Q6_K"), ("q4_0", "Q4_0")):
        folder = compile_graph(graph, tmp_path / requantize, requantize=requantize)
        types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(folder / "model.gguf").tensors}
        assert types["output.weight"] == head and types["blk.0.ffn_down.weight"] == "Q4_0"
        # random weights at 4 bits: ~0.27 of the largest logit (test above), either head
        err = _max_err(irgraph.runtimes.open(folder).forward(ids), ref)
        assert err <= 0.4 * float(np.abs(ref).max()), (requantize, err)
