"""PaLM's output logits are scaled by 1/sqrt(d_model) (PaLM Sec. 5, shared input-output
embeddings), a `scale` after the tied LM head: last-position-logits carries it into logits_last,
and the ONNX artifact's forward_last gives the interpreter's last-position logits (issue 18 item
2). tests/test_tvm_zoo.py checks tvm-llvm's forward_last for PaLM and the other fast-tier twins."""

from __future__ import annotations

import json

import numpy as np
import pytest

from irgraph import lm, model_zoo, runtimes

PROMPT = np.array([[3, 1, 4, 1, 5, 9, 2, 6]])


@pytest.fixture(scope="module")
def palm():
    return model_zoo.build("palm", seed=0)


def test_the_head_ends_in_the_width_scale(palm):
    cfg = model_zoo.config("palm", "tiny")
    head = palm.producers()[palm.outputs[lm.LOGITS]]
    assert head.op == "scale" and head.attrs["factor"] == pytest.approx(cfg.hidden**-0.5)
    assert model_zoo.config("palm").logit_scale == pytest.approx(18432**-0.5)
    assert palm.producers()[head.inputs[0]].inputs[1].param == "embed.weight"  # tied head


def test_onnx_forward_last_gives_the_scaled_last_position_logits(palm, tmp_path):
    from irgraph.codegen.onnx import compile_graph

    art = compile_graph(palm, tmp_path / "onnx")
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["onnx"]["model_last"] == "model_last.onnx", manifest
    session = runtimes.open(art)
    full = lm.interpret(palm, PROMPT)
    logits, cache = session.step(
        lm.make_feeds(session.inputs, PROMPT, lm.empty_cache(session.inputs, 1), past_len=0)
    )
    assert logits.shape == (1, 1, 256) and full[:, -1:].std() > 0.05
    np.testing.assert_allclose(logits, full[:, -1:], rtol=0, atol=1e-5)
    nxt = np.array([[7]])
    logits, _ = session.step(lm.make_feeds(session.inputs, nxt, cache, past_len=PROMPT.shape[1]))
    want = lm.interpret(palm, np.concatenate([PROMPT, nxt], axis=1))[:, -1:]
    np.testing.assert_allclose(logits, want, rtol=0, atol=1e-5)  # a decode step
