"""tvm-aarch64: the cross-compiled artifact, run by the C++ runner under qemu, equals the reference.

Slow tier, its own command (needs root or an installed toolchain, and PyPI for the aarch64 runtime):
    .venv/bin/pytest -m slow tests/test_tvm_edge.py
codegen/tvm/runner/setup.sh installs gcc/g++-aarch64-linux-gnu and qemu-user, unpacks the aarch64
apache-tvm / apache-tvm-ffi wheels and builds the runner.
"""

from __future__ import annotations

import numpy as np
import pytest

import irgraph
from irgraph import lm
from irgraph.codegen.tvm.artifact import compile_graph
from irgraph.codegen.tvm.edge import build_runner, run_native
from irgraph.lm import graph_inputs, is_encoder_decoder
from irgraph.model_zoo import build, names
from irgraph.runtimes import read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_runner(tmp_path_factory.mktemp("runtime"))


# LLaMA-2: the hand-written linear, attention, rotary and rms_norm kernels; Mixtral: the grouped MoE
# kernels; DeepSeek-v2: the absorbed latent attention; GPT-NeoX: layer norm and the erf GELU.
@pytest.mark.parametrize("name", ["llama-2", "mixtral-8x22b", "deepseek-v2", "gpt-neox-20b"])
def test_native_runner_matches_interpreter(tmp_path, runner, name):
    graph = build(name, size="tiny", seed=0)
    artifact = compile_graph(graph, tmp_path / f"{name}-aarch64", target="tvm-aarch64")
    manifest = read_manifest(artifact)
    assert manifest["target"] == "tvm-aarch64" and "aarch64" in manifest["tvm"]["target"]["mtriple"]
    assert (artifact / "model.so").read_bytes()[:4] == b"\x7fELF"
    assert (artifact / "model.so").read_bytes()[18] == 183  # e_machine EM_AARCH64

    prompt, steps = [1, 5, 9, 3, 7, 11, 2], 12
    tokens, logits = run_native(runner, artifact, prompt, steps)
    fed = prompt + tokens[:-1]
    reference = lm.interpret(graph, np.array([fed]))[0]  # logits for every position the runner fed
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
    expected = []
    for t in range(steps):  # greedy tokens of the reference with its own cached decode
        expected.append(int(reference[len(prompt) - 1 + t].argmax()))
    assert tokens == expected
    decoded = lm.interpret(graph, np.array([fed]), decode=True)[0]
    np.testing.assert_allclose(logits, decoded, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", names())
def test_every_zoo_model_runs_on_the_board(tmp_path, runner, name):
    """Prefill + 3 cached steps on the runner vs one full interpreter pass.

    Prefix LMs take the prompt as the prefix; encoder-decoders take it as the encoder's input and
    decode from decoder_start_token_id.
    """
    graph = build(name, size="tiny", seed=0)
    prompt = [1, 5, 9, 3]
    tokens, logits = run_native(
        runner, compile_graph(graph, tmp_path / name, target="tvm-aarch64"), prompt, 4
    )
    inputs = graph_inputs(graph)
    if is_encoder_decoder(inputs):
        fed, extra = (
            [int(graph.meta.get("decoder_start_token_id") or 0)] + tokens[:-1],
            {"encoder_ids": [prompt]},
        )
    else:
        fed, extra = (
            prompt + tokens[:-1],
            {"prefix_len": np.array([len(prompt)])} if "prefix_len" in inputs else {},
        )
    reference = irgraph.interpret(graph, np.array([fed]), **extra)[0]
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)


def _chunked_reference(graph, prompt: list[int], tokens: list[int]) -> np.ndarray:
    """The interpreter fed as the runner feeds: the prompt in one call, then one token a call."""
    inputs = graph_inputs(graph)
    cache = lm.empty_cache(inputs, 1)
    rows, past = [], 0
    for chunk in [prompt, *([t] for t in tokens)]:
        feeds = lm.make_feeds(inputs, np.array([chunk]), cache, past_len=past)
        out = irgraph.run(graph, feeds)
        rows.append(out["logits"][0])
        cache = {n: out[lm.present_name(n)] for n in cache}
        past += len(chunk)
    return np.concatenate(rows)


# Quantized weights on the board: int4 and int8 (sym, g32; asym, g128) through the packed
# kernels; and the KV rewrites: an int8 cache, and GPT-3's banded layers as rings.
BOARD = {
    "int4 g32": ("llama-2", "quantize(method=rtn, bits=4, group=32)", 1e-4),
    "int4 asym g128": ("llama-2", "quantize(method=rtn, bits=4, group=128, sym=false)", 1e-4),
    "int8 g32": ("mixtral-8x22b", "quantize(method=rtn, bits=8, group=32)", 1e-4),
    # a key computed on the board can differ from the interpreter's by a float ulp and land
    # one int8 step away: logits then differ by ~1e-2 (benchmarks/kv_quant_quality.py)
    "kv int8": ("llama-2", "quantize-kv", 5e-2),
    "ring": ("gpt-3", "sliding-window-cache", 1e-4),
}


@pytest.mark.parametrize("case", list(BOARD))
def test_rewritten_graphs_match_the_interpreter_on_the_board(tmp_path, runner, case):
    from irgraph.passes import run_pipeline

    name, pipeline, tol = BOARD[case]
    graph = run_pipeline(build(name, size="tiny", seed=0), pipeline).graph
    artifact = compile_graph(graph, tmp_path / "board", target="tvm-aarch64")
    prompt, steps = [1, 5, 9, 3, 7, 11, 2], 10
    tokens, logits = run_native(runner, artifact, prompt, steps)
    reference = _chunked_reference(graph, prompt, tokens[:-1])  # every position fed
    np.testing.assert_allclose(logits, reference, rtol=tol, atol=tol)
