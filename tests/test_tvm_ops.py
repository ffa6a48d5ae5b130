"""TVM backend, op by op: every registry op lowers, and tvm-llvm matches the interpreter.

Two hand-built graphs cover the op set: `primitive_graph` (every elementwise,
tensor and nn op, each result a graph output) and `attention_lm` (a 3-layer LM
whose layers exercise MLA, grouped sigmoid MoE routing, ALiBi, softcap, sliding
windows, prefix-LM masks, T5 relative bias, GQA, ungated experts and every
rotary variant), checked for prefill and cached decode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irgraph import GraphBuilder, lm
from irgraph.codegen.lowering import LEGALIZE
from irgraph.codegen.tvm import LOWERINGS
from irgraph.codegen.tvm.artifact import compile_graph
from irgraph.errors import CodegenError
from irgraph.interpreter import run as interpret_run
from irgraph.registry import OPS
from irgraph.runtimes.tvm import TVMSession
from tests.helpers.attention_lm import attention_lm

D = 8


def primitive_graph():
    rng = np.random.default_rng(1)
    b = GraphBuilder("primitives")
    x = b.input("x", f"f32[batch, seq, {D}]")
    y = b.input("y", f"f32[batch, seq, {D}]")  # positive: log, sqrt, rsqrt, pow
    idx = b.input("idx", "i64[batch, seq]")
    gidx = b.input(
        "gidx", "i64[batch, seq]"
    )  # may be negative: gather counts from the end, as np.take
    w = {
        "w": rng.standard_normal((12, D)).astype(np.float32),
        "bias": rng.standard_normal(12).astype(np.float32),
        "g": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
        "beta": rng.standard_normal(D).astype(np.float32),
        "table": rng.standard_normal((10, D)).astype(np.float32),
        "m": rng.standard_normal((D, 5)).astype(np.float32),
        "w2": rng.standard_normal((7, D)).astype(np.float32),
        "w32": rng.standard_normal((64, D)).astype(np.float32),
        "w48": rng.standard_normal((48, D)).astype(np.float32),
    }
    p = {k: b.param(k, f"f32[{', '.join(map(str, v.shape))}]") for k, v in w.items()}
    outs = {}
    for op in (
        "neg",
        "exp",
        "tanh",
        "sin",
        "cos",
        "erf",
        "sigmoid",
        "relu",
        "relu2",
        "silu",
        "fast_gelu",
    ):
        outs[op] = b.op(op, x)
    for op in ("log", "sqrt", "rsqrt"):
        outs[op] = b.op(op, y)
    outs["gelu"] = b.gelu(x)
    outs["gelu_tanh"] = b.gelu(x, approximate="tanh")
    outs["scale"] = b.scale(x, factor=0.5)
    for op in ("add", "sub", "mul", "div", "maximum", "minimum"):
        outs[op] = b.op(op, x, y)
    outs["pow"] = b.pow(y, x)
    for act in ("relu", "relu2", "gelu", "gelu_tanh", "fast_gelu", "silu", "sigmoid"):
        outs[f"glu_{act}"] = b.glu(x, y, act=act)
    outs["matmul"] = b.matmul(x, p["m"])
    outs["linear_bias"] = b.linear(x, p["w"], p["bias"])
    outs["linear_unpacked"] = b.linear(x, p["w2"])  # 7 rows: not a multiple of the packing block
    outs["linear_packed32"] = b.linear(x, p["w32"])
    outs["linear_packed16"] = b.linear(x, p["w48"])
    heads = b.reshape(x, shape=[0, 0, 2, -1])
    outs["transpose"] = b.transpose(heads, perm=[0, 2, 1, 3])
    left, right = b.split(x, axis=2, sizes=[3, 5])
    outs["concat"] = b.concat(right, left, axis=-1)
    outs["slice"] = b.slice(x, axis=2, start=1, end=7, step=2)
    outs["slice_seq"] = b.slice(x, axis=1, start=-1)
    outs["gather"] = b.gather(p["table"], gidx, axis=0)
    outs["where"] = b.where(b.cast(b.relu(x), dtype="bool"), x, y)
    outs["cast"] = b.cast(b.cast(b.scale(x, factor=3.0), dtype="i64"), dtype="f32")
    outs["softmax"] = b.softmax(x, axis=-1)
    outs["reduce_sum"] = b.reduce_sum(x, axes=[2], keepdims=False)
    outs["reduce_mean"] = b.reduce_mean(x, axes=[-1])
    outs["reduce_max"] = b.reduce_max(x, axes=[1, 2])
    outs["embedding"] = b.embedding(idx, p["table"])
    outs["layer_norm"] = b.layer_norm(x, p["g"], p["beta"], eps=1e-5, weight_offset=1.0)
    outs["layer_norm_nobias"] = b.layer_norm(x, p["g"])
    outs["rms_norm"] = b.rms_norm(x, p["g"], eps=1e-6, weight_offset=0.5)
    for name, v in outs.items():
        b.output(name, v)
    return b.build(w)


@pytest.fixture(scope="module")
def primitives(tmp_path_factory):
    g = primitive_graph()
    return g, TVMSession(
        compile_graph(g, tmp_path_factory.mktemp("tvm") / "prims", target="tvm-llvm")
    )


@pytest.fixture(scope="module")
def llama_artifact(tmp_path_factory):
    from tests.helpers.handbuilt import tiny_llama

    return compile_graph(
        tiny_llama(seed=0), tmp_path_factory.mktemp("tvm") / "llama", target="tvm-llvm"
    )


def test_every_registry_op_has_a_lowering():
    # latent attention reaches TVM rewritten by absorb-latent (codegen/lowering.py LEGALIZE)
    assert sorted(set(OPS) - set(LOWERINGS)) == sorted(LEGALIZE)


def test_primitives_match_interpreter(primitives):
    g, session = primitives
    rng = np.random.default_rng(3)
    for batch, seq in ((2, 3), (1, 1)):
        feeds = {
            "x": rng.standard_normal((batch, seq, D)).astype(np.float32),
            "y": (0.5 + rng.random((batch, seq, D))).astype(np.float32),
            "idx": rng.integers(0, 10, (batch, seq)),
            "gidx": rng.integers(-10, 10, (batch, seq)),
        }
        ref = interpret_run(g, feeds)
        got = session.run(feeds)
        assert set(got) == set(ref)
        for name in ref:
            assert got[name].shape == ref[name].shape, name
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_packed_and_plain_linear_layouts(primitives):
    _, session = primitives
    layouts = {a["name"]: a["layout"] for a in session.manifest["tvm"]["weight_args"]}
    assert layouts["w"] == "plain"  # 12 rows: no packing block (32, 16) divides it
    assert layouts["w2"] == "plain" and layouts["table"] == "plain"
    assert layouts["w32"] == "packed32" and layouts["w48"] == "packed16"
    shapes = {a["name"]: a["shape"] for a in session.manifest["tvm"]["weight_args"]}
    assert shapes["w32"] == [2, D, 32] and shapes["w48"] == [3, D, 16]


def test_attention_lm_prefill_and_decode(tmp_path):
    g = attention_lm()
    session = TVMSession(compile_graph(g, tmp_path / "attn", target="tvm-llvm"))
    ids = np.array([[3, 17, 5, 29, 11, 8], [1, 2, 3, 4, 5, 6]])
    for decode in (False, True):
        ref = lm.interpret(g, ids, decode=decode)
        got = session.forward(ids, decode=decode)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4, err_msg=f"decode={decode}")


def test_missing_lowering_names_op_and_target(monkeypatch):
    from irgraph.codegen.tvm import build_module

    g = primitive_graph()
    monkeypatch.delitem(LOWERINGS, "erf")
    with pytest.raises(CodegenError, match=r"no TVM lowering for op erf.*tvm-llvm|tvm-llvm.*erf"):
        build_module(g, "llvm")


def test_one_build_serves_another_checkpoint(llama_artifact):
    """Weights are arguments of `forward`, not constants: new weights need no rebuild."""
    from tests.helpers.handbuilt import tiny_llama

    artifact = llama_artifact
    other = tiny_llama(seed=1)
    session = TVMSession(artifact, weights={name: other.weight(name) for name in other.params})
    ids = np.array([[4, 8, 15, 16, 23]])
    np.testing.assert_allclose(
        session.forward(ids, decode=True),
        lm.interpret(other, ids, decode=True),
        rtol=1e-4,
        atol=1e-4,
    )
    assert not np.allclose(TVMSession(artifact).forward(ids), session.forward(ids), atol=1e-2)


@pytest.mark.parametrize("storage", ["f16", "bf16"])
def test_narrow_weights_under_fp32_activations(storage, tmp_path):
    """HF-imported fp16/bf16 weights stream narrow and compute in fp32, as the reference does."""
    import ml_dtypes

    np_type = {"f16": np.float16, "bf16": ml_dtypes.bfloat16}[storage]
    rng = np.random.default_rng(5)
    shapes = {
        "w": (32, D),
        "w_odd": (6, D),
        "bias": (32,),
        "g": (D,),
        "m": (D, 3),
        "up": (2, 4, D),
        "down": (2, D, 4),
        "router": (2, D),
    }
    weights = {k: rng.standard_normal(s).astype(np_type) for k, s in shapes.items()}
    b = GraphBuilder("narrow")
    x = b.input("x", f"f32[batch, seq, {D}]")
    p = {k: b.param(k, f"{storage}[{', '.join(map(str, s))}]") for k, s in shapes.items()}
    b.output("packed", b.linear(x, p["w"], p["bias"]))
    b.output("plain", b.linear(x, p["w_odd"]))
    h = b.rms_norm(b.layer_norm(x, p["g"]), p["g"])
    b.output("norms", h)
    b.output("matmul", b.matmul(h, p["m"]))
    w, idx = b.moe_router(h, p["router"], top_k=1)
    b.output("moe", b.moe_experts(h, w, idx, p["up"], p["down"], act="relu"))
    g = b.build(weights)
    session = TVMSession(compile_graph(g, tmp_path / storage, target="tvm-llvm"))
    layouts = {a["name"]: (a["layout"], a["dtype"]) for a in session.manifest["tvm"]["weight_args"]}
    assert layouts["w"] == ("packed32", storage)
    feeds = {"x": rng.standard_normal((2, 3, D)).astype(np.float32)}
    ref, got = interpret_run(g, feeds), session.run(feeds)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_step_keeps_the_cache_on_the_device(llama_artifact):
    import tvm

    from tests.helpers.handbuilt import tiny_llama

    g = tiny_llama()
    session = TVMSession(llama_artifact)
    ids = np.array([[3, 1, 4, 1, 5]])
    cache = lm.empty_cache(session.inputs, 1)
    rows = []
    for t in range(ids.shape[1]):
        logits, cache = session.step(
            lm.make_feeds(session.inputs, ids[:, t : t + 1], cache, past_len=t)
        )
        rows.append(logits)
    assert all(isinstance(v, tvm.runtime.Tensor) for v in cache.values())
    assert cache["past_key_values.0.key"].shape == (1, 2, 5, 8)
    np.testing.assert_allclose(
        np.concatenate(rows, axis=1), lm.interpret(g, ids, decode=True), rtol=1e-4, atol=1e-4
    )


def test_tampered_artifact_is_refused(llama_artifact, tmp_path):
    import shutil

    from irgraph.errors import RuntimeFailure

    artifact = Path(shutil.copytree(llama_artifact, tmp_path / "llama"))
    manifest = TVMSession(artifact).manifest
    assert (
        manifest["tools"]["apache-tvm"].startswith("0.27")
        and manifest["tvm"]["function"] == "forward"
    )
    assert [e["name"] for e in manifest["inputs"]][:3] == [
        "input_ids",
        "position_ids",
        "attention_mask",
    ]
    weights = artifact / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RuntimeFailure, match="weights.safetensors"):
        TVMSession(artifact)


def test_bad_feeds_name_the_input(llama_artifact):
    from irgraph.errors import InputError

    session = TVMSession(llama_artifact)
    feeds = lm.make_feeds(
        session.inputs, np.array([[1, 2]]), lm.empty_cache(session.inputs, 1), past_len=0
    )
    # Session.check refuses these before the VM sees them (tests/test_session_validation.py)
    with pytest.raises(InputError, match="'past_key_values.0.key' has the wrong shape"):
        session.run({**feeds, "past_key_values.0.key": np.zeros((1, 3, 0, 8), np.float32)})
    with pytest.raises(InputError, match="dim past is 0 here but 4 elsewhere"):
        session.run({**feeds, "past_key_values.0.key": np.zeros((1, 2, 4, 8), np.float32)})
    with pytest.raises(InputError, match="missing inputs: input_ids"):
        session.run({k: v for k, v in feeds.items() if k != "input_ids"})
