"""Zoo models through tvm-llvm match the reference interpreter for prefill and cached decode, and
`forward_last` (generation's step) gives the interpreter's last-position logits.

Fast tier: tiny LLaMA-2, PaLM (whose head ends in a 1/sqrt(d_model) scale), BLOOM, T5, Mixtral
and DeepSeek-v2. Slow tier: every zoo model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import lm
from irgraph.codegen.tvm.artifact import compile_graph
from irgraph.runtimes.tvm import TVMSession

FAST = ["llama-2", "palm", "bloom", "t5", "mixtral-8x22b", "deepseek-v2"]


def _check(name: str, tmp_path) -> None:
    graph = zoo.build(name, size="tiny", seed=0)
    art = compile_graph(graph, tmp_path / name, target="tvm-llvm")
    session = TVMSession(art)
    rng = np.random.default_rng(0)
    high = int(graph.meta.get("vocab_size", 32))
    ids = rng.integers(1, min(high, 50), (2, 5))
    kw = {}
    if lm.is_encoder_decoder(session.inputs):
        kw["encoder_ids"] = rng.integers(1, min(high, 50), (2, 4))
    for decode in (False, True):
        ref = lm.interpret(graph, ids, decode=decode, **kw)
        got = session.forward(ids, decode=decode, **kw)
        np.testing.assert_allclose(
            got, ref, rtol=1e-4, atol=1e-4, err_msg=f"{name} decode={decode}"
        )
    if not lm.is_encoder_decoder(session.inputs):
        manifest = json.loads((art / "manifest.json").read_text())
        assert manifest["tvm"]["function_last"] == "forward_last", name
        last, _ = session.step(
            lm.make_feeds(session.inputs, ids, lm.empty_cache(session.inputs, 2), past_len=0)
        )
        np.testing.assert_allclose(
            last, lm.interpret(graph, ids)[:, -1:], rtol=0, atol=1e-5, err_msg=f"{name} step"
        )


@pytest.mark.parametrize("name", FAST)
def test_tiny_zoo_model_matches_interpreter(name, tmp_path):
    _check(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in zoo.names() if n not in FAST])
def test_every_tiny_zoo_model_matches_interpreter(name, tmp_path):
    _check(name, tmp_path)
