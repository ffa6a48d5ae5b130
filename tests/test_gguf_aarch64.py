"""GGUF on aarch64 (slow tier): llama.cpp cross-built from the pinned llama-cpp-python sdist
runs irgraph's f32 GGUF under qemu-aarch64 with the interpreter's logits (<= 1e-3; GELU models
within ggml's f16 GELU table), prefill and 23 decode steps. The first run builds the runner
(20 minutes at nice 19 on 2 shared cores; cached under ~/.cache/irgraph/gguf-aarch64); the
runs add about 2.5 minutes. IRGRAPH_LLAMA_SDIST names the sdist."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from irgraph import lm, model_zoo
from irgraph.codegen.gguf import compile_graph
from irgraph.codegen.gguf.board import build_runner, run_logits
from irgraph.errors import DeviceUnavailable

pytestmark = pytest.mark.slow
pytest.importorskip("gguf")
SDIST = Path(os.environ.get("IRGRAPH_LLAMA_SDIST", "/tmp/lcp/llama_cpp_python-0.3.36.tar.gz"))


@pytest.fixture(scope="module")
def runner():
    if not SDIST.is_file():
        pytest.skip(f"no llama-cpp-python sdist at {SDIST} (set IRGRAPH_LLAMA_SDIST)")
    try:
        return build_runner(SDIST)
    except DeviceUnavailable as e:
        pytest.skip(e.message)


# GELU models: ggml_gelu looks its result up in an f16 table (the input rounded to f16), which
# moves the tiny twins' logits by up to 1.44e-3 (GPT-NeoX, measured under qemu-aarch64)
@pytest.mark.parametrize("name, tolerance", [("llama-2", 1e-3), ("gpt-neox-20b", 3e-3)])
def test_aarch64_llama_cpp_matches_the_interpreter(runner, name, tolerance, tmp_path):
    graph = model_zoo.build(name, size="tiny", seed=0)
    model = compile_graph(graph, tmp_path / "a") / "model.gguf"
    vocab = int(graph.params["embed.weight"].type.shape[0])
    ids = np.random.default_rng(0).integers(3, vocab, (1, 24))
    for decode in (False, True):
        got = run_logits(runner, model, list(ids[0]), decode=decode, vocab=vocab)
        want = lm.interpret(graph, ids, decode=decode)[0]
        assert float(np.abs(got - want).max()) <= tolerance
