"""forward and forward_last in every backend: artifacts of tiny llama-2 built with the default
passes match the interpreter, keep main's ONNX op-type histogram, and step on logits_last."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

import irgraph
from irgraph import ConfigError, lm
from irgraph.model_zoo import build
from irgraph.runtimes.generate import Sampling, generate
from irgraph.runtimes.interpreter import InterpreterSession

# Tiny LLaMA-2's ONNX (ort) model as the lowerings built it before the sibling-linear fusion and the
# add + RMSNorm fold moved into the default passes: the passes must give the same ops and bytes.
OLD_LLAMA_OPS = {
    ":Cast": 4, ":Concat": 1, ":Cos": 1, ":Gather": 1, ":MatMul": 11, ":Max": 1, ":Mul": 5,
    ":Pad": 2, ":RMSNormalization": 1, ":Range": 1, ":ReduceSum": 1, ":Reshape": 3, ":Shape": 4,
    ":Sigmoid": 2, ":Sin": 1, ":Squeeze": 2, ":Sub": 2, ":Unsqueeze": 2,
    "com.microsoft:GroupQueryAttention": 2, "com.microsoft:SkipSimplifiedLayerNormalization": 4,
}  # fmt: skip
OLD_LLAMA_DATA_BYTES = 425984  # model.onnx.data: no weight stored twice for model_last.onnx
PROMPT = [[3, 1, 4, 1, 5, 9]]


def histogram(path: Path) -> Counter:
    model = onnx.load(str(path), load_external_data=False)
    return Counter(f"{n.domain}:{n.op_type}" for n in model.graph.node)


def check_session(session, graph) -> None:
    """forward vs the interpreter (prefill and decode), step's logits_last vs forward's last row."""
    ids = np.array(PROMPT)
    for decode in (False, True):
        np.testing.assert_allclose(
            session.forward(ids, decode=decode),
            lm.interpret(graph, ids, decode=decode),
            rtol=1e-5,
            atol=1e-5,
        )
    full = session.run(
        lm.make_feeds(session.inputs, ids, lm.empty_cache(session.inputs, 1), past_len=0)
    )
    assert lm.LOGITS_LAST not in full
    cache = lm.empty_cache(session.inputs, 1)
    logits, cache = session.step(lm.make_feeds(session.inputs, ids, cache, past_len=0))
    assert logits.shape == (1, 1, 256)  # prefill: the last position only
    np.testing.assert_allclose(logits, full["logits"][:, -1:], rtol=1e-5, atol=1e-5)
    nxt = np.array([[7]])
    logits, _ = session.step(lm.make_feeds(session.inputs, nxt, cache, past_len=ids.shape[1]))
    want = lm.interpret(graph, np.concatenate([ids, nxt], axis=1))[:, -1:]
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)  # decode step
    assert session.generate(PROMPT, 6) == generate(
        InterpreterSession(graph), PROMPT, 6, sampling=Sampling()
    )


def test_onnx_default_passes_keep_mains_ops_and_share_weights(tmp_path):
    from irgraph.codegen.onnx import compile_graph

    graph = build("llama-2", size="tiny", seed=0)
    art = compile_graph(graph, tmp_path / "ort")
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["onnx"]["model_last"] == "model_last.onnx"
    assert manifest["passes"]["default"].endswith("fuse-add-norm,last-position-logits")
    assert histogram(art / "model.onnx") == OLD_LLAMA_OPS
    assert (art / "model.onnx.data").stat().st_size == OLD_LLAMA_DATA_BYTES
    last = onnx.load(str(art / "model_last.onnx"), load_external_data=False)
    full = onnx.load(str(art / "model.onnx"), load_external_data=False)
    assert {o.name for o in last.graph.output} - {o.name for o in full.graph.output} == {
        lm.LOGITS_LAST
    }
    assert {
        e.value for t in last.graph.initializer for e in t.external_data if e.key == "location"
    } == {"model.onnx.data"}
    assert json.loads((art / "genai_config.json").read_text())["model"]["decoder"]["filename"] == (
        "model.onnx"
    )
    check_session(irgraph.runtimes.open(art), graph)


def test_tvm_forward_last_from_logits_last(tmp_path):
    pytest.importorskip("tvm")
    from irgraph.codegen.tvm.artifact import compile_graph

    graph = build("llama-2", size="tiny", seed=0)
    art = compile_graph(graph, tmp_path / "tvm")
    info = json.loads((art / "manifest.json").read_text())["tvm"]
    assert info["function_last"] == "forward_last" and info["outputs_last"][-1] == lm.LOGITS_LAST
    check_session(irgraph.runtimes.open(art), graph)


def test_scaled_logits_get_logits_last_too():
    from irgraph.passes import run_pipeline

    graph = build("t5", size="tiny", seed=0)  # logits = scale(linear(norm)): handled
    out = run_pipeline(graph, "last-position-logits", check=True).graph
    assert list(out.outputs)[-1] == lm.LOGITS_LAST


def test_generate_takes_one_flat_prompt():
    """`generate([1, 2, 3], n)` is one prompt (it raised a bare TypeError before)."""
    session = InterpreterSession(build("llama-2", size="tiny", seed=0))
    assert session.generate([3, 1, 4], 3) == session.generate([[3, 1, 4]], 3)
    with pytest.raises(ConfigError, match="at least one token"):
        session.generate([[]], 3)
