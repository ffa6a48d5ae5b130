"""quantize(method=gptq) (issue 13): known answers against RTN, damping retries, dead inputs,
layer-by-layer calibration on the already-quantized layers, and its options."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import lm
from irgraph.activations import ACTIVATIONS
from irgraph.dtypes import DType
from irgraph.errors import PassError
from irgraph.ir import Graph
from irgraph.passes import PassContext, run_pipeline
from irgraph.passes.calibrate import (
    Calibrator,
    evaluate,
    expert_stacks,
    feeds_for,
    linear_inputs,
    linear_stages,
)
from irgraph.passes.quantize import gptq, rtn
from irgraph.quant import QuantSpec, dequantize
from tests.helpers.handbuilt import VOCAB, tiny_llama

F16 = DType.f16


def _spec(bits: int = 4, group: int = 8, sym: bool = True) -> QuantSpec:
    return QuantSpec(bits, group, sym, F16)


def _correlated(rows: int, k: int, seed: int = 0) -> np.ndarray:
    """Inputs whose features are strongly correlated (a few latent factors plus noise)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((rows, 4)) @ rng.standard_normal((4, k))
    return (latent + 0.1 * rng.standard_normal((rows, k))).astype(np.float32)


@pytest.mark.parametrize("act_order", [True, False])
@pytest.mark.parametrize(
    "spec", [_spec(), _spec(3, 0), _spec(4, 6, sym=False), _spec(8, 16)], ids=str
)
def test_identity_hessian_gives_exactly_rtn(spec, act_order):
    # K = 20: group 6 pads the last group, group 16 leaves a group of 4
    w = np.random.default_rng(1).standard_normal((5, 20)).astype(np.float32)
    got, damp = gptq.quantize_weight(w, np.eye(20), spec, gptq.Options(act_order=act_order))
    want = rtn.quantize_weight(w, spec)
    assert damp == 0.01 and set(got) == set(want)
    for suffix in want:
        np.testing.assert_array_equal(got[suffix], want[suffix])


@pytest.mark.parametrize("act_order", [True, False])
@pytest.mark.parametrize("bits, group", [(4, 8), (3, 0)])
def test_gptq_lowers_layer_output_error_on_correlated_inputs(bits, group, act_order):
    x = _correlated(512, 32)
    w = np.random.default_rng(2).standard_normal((24, 32)).astype(np.float32)
    spec = _spec(bits, group)
    h = 2 * x.T.astype(np.float64) @ x / len(x)
    stored, _ = gptq.quantize_weight(w, h, spec, gptq.Options(act_order=act_order, block=8))

    def error(arrays):
        return float(np.sum((x @ w.T - x @ dequantize(spec, w.shape, arrays).T) ** 2))

    assert error(stored) < 0.5 * error(rtn.quantize_weight(w, spec))


def test_dead_inputs_get_a_zero_column_and_no_nan():
    x = _correlated(64, 16)
    x[:, [3, 7]] = 0.0  # features that never fire
    w = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    h = 2 * x.T.astype(np.float64) @ x / len(x)
    stored, damp = gptq.quantize_weight(w, h, _spec(), gptq.Options(damp=0.0))
    deq = dequantize(_spec(), w.shape, stored)
    assert damp == 0.0 and np.all(np.isfinite(deq))
    np.testing.assert_array_equal(deq[:, [3, 7]], 0.0)


def test_cholesky_failure_retries_at_larger_damping_then_fails_clearly():
    w = np.ones((2, 2), np.float32)
    # eigenvalues 2.05 and -0.05 (mean diag 1): indefinite at damp 0.01, positive at 0.1
    _, damp = gptq.quantize_weight(
        w, np.array([[1.0, 1.05], [1.05, 1.0]]), _spec(group=2), gptq.Options()
    )
    assert damp == pytest.approx(0.1)
    with pytest.raises(PassError, match=r"Hessian of @w .* damp=0.01, 0.1, 1.0, 10.0"):
        gptq.quantize_weight(
            w, np.array([[1.0, 21.0], [21.0, 1.0]]), _spec(group=2), gptq.Options(), "w"
        )


def _calibration(n: int = 2, seq: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [rng.integers(0, VOCAB, (2, seq)) for _ in range(n)]


def test_stages_follow_the_layers_in_order():
    g = tiny_llama()
    stages = linear_stages(g, linear_inputs(g, set(g.params)))
    names = [sorted(p.split(".", 2)[-1] for p in s.params) for s in stages]
    block = [
        ["k.weight", "q.weight", "v.weight"],
        ["o.weight"],
        ["gate.weight", "up.weight"],
        ["down.weight"],
    ]
    assert names == block * 2 + [["weight"]]  # then the LM head
    assert [len(s.inputs) for s in stages] == [1, 1, 1, 1] * 2 + [1]  # q/k/v share one input


def test_calibration_runs_the_quantized_earlier_layers():
    """A stage's activations are the quantized graph's own, computed by the interpreter."""
    g = tiny_llama()
    ctx = PassContext(calibration=_calibration())
    q = run_pipeline(g, "quantize(method=gptq, bits=4, group=8)", ctx=ctx).graph
    feeds = feeds_for(g, _calibration()[0])
    current = {name: np.asarray(q.weight(name)) for name in q.params}
    logits = evaluate(g, feeds, {g.outputs["logits"]}, current)[g.outputs["logits"]]
    np.testing.assert_allclose(logits, lm.interpret(q, _calibration()[0]), rtol=1e-5, atol=1e-5)


def _layer_error(g: Graph, q: Graph, batches: list[np.ndarray]) -> float:
    ids = np.concatenate(batches)
    return float(np.mean((lm.interpret(q, ids) - lm.interpret(g, ids)) ** 2))


def test_gptq_pass_beats_rtn_on_its_calibration_data_and_reports():
    g = tiny_llama()
    seen: list[str] = []
    ctx = PassContext(calibration=_calibration(4), progress=lambda d, t, what: seen.append(what))
    result = run_pipeline(g, "quantize(method=gptq, bits=3, group=8)", ctx=ctx, check=False)
    rtn_graph = run_pipeline(g, "quantize(method=rtn, bits=3, group=8)").graph
    assert str(result.graph.params["layers.0.q.weight"].type) == "i4<b3,g8,sym,f16>[32, 32]"
    assert _layer_error(g, result.graph, _calibration(4)) < _layer_error(
        g, rtn_graph, _calibration(4)
    )
    assert "quantize: gptq layer 1/9" in seen and "quantize: gptq layer 9/9" in seen
    assert "1 weights not read by a linear rounded to nearest" in result.records[-1].note


def test_gptq_without_calibration_names_the_option():
    with pytest.raises(PassError, match="needs calibration data.*--calibration"):
        run_pipeline(tiny_llama(), "quantize(method=gptq)")


@pytest.mark.parametrize("option", ["damp=0.1", "act_order=false", "block=64"])
def test_gptq_options_are_errors_for_other_methods(option):
    with pytest.raises(PassError, match=f"{option.split('=')[0]} of pass quantize are not used"):
        run_pipeline(tiny_llama(), f"quantize(method=rtn, {option})")


def test_resumed_calibration_equals_running_each_stage_from_the_start():
    """Calibrator resumes each batch where the last stage stopped; the statistics are those of
    a fresh run with the same (partly quantized) weights."""
    g = tiny_llama()
    batches = _calibration(2, 6)
    uses = linear_inputs(g, set(g.params) - {"embed.weight"})
    calibrator = Calibrator(g, batches)
    current: dict[str, np.ndarray] = {}
    for stage in linear_stages(g, uses):
        got = calibrator.hessians(stage.inputs, current, lambda *_: None, "")
        for x in stage.inputs:
            acts = [evaluate(g, feeds_for(g, ids), {x}, current)[x] for ids in batches]
            a = np.concatenate([v.reshape(-1, v.shape[-1]) for v in acts]).astype(np.float64)
            np.testing.assert_allclose(got[x], 2 * a.T @ a / len(a), rtol=1e-12)
        for name in stage.params:  # the next stage sees these weights rounded
            current[name] = dequantize(
                _spec(), g.params[name].type.shape, rtn.quantize_weight(g.weight(name), _spec())
            )
    assert calibrator.restarts == 0 and all(done > 0 for done, _ in calibrator.states)


def _zoo_calibration(g: Graph, n: int = 2, seq: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    vocab = min(int(g.meta.get("vocab_size", 32)), 50)
    return [rng.integers(1, vocab, (2, seq)) for _ in range(n)]


def test_every_expert_gets_statistics_from_every_token():
    """Each expert's down-projection Hessian is computed with every calibration token run through
    that expert, whatever the router picks (here checked against a hand computation)."""
    g = zoo.build("mixtral-8x22b", size="tiny", seed=0)
    batches = _zoo_calibration(g)
    experts = expert_stacks(g, set(g.params))
    assert {role for _, role in experts.values()} == {"w_up", "w_gate", "w_down"}
    stages = linear_stages(g, {}, experts)
    down = next(s for s in stages if s.experts)
    node = down.experts[0]
    got = Calibrator(g, batches).hessians(down.inputs, {}, lambda *_: None, "", down.experts)
    x = node.inputs[0]
    acts = [evaluate(g, feeds_for(g, ids), {x}, {})[x] for ids in batches]
    a = np.concatenate([v.reshape(-1, v.shape[-1]) for v in acts]).astype(np.float32)
    slots = {"w_up": 3, "w_gate": 5}
    up, gate = (np.asarray(g.weight(node.inputs[s].param)) for s in slots.values())
    act = ACTIVATIONS[node.attrs["act"]].fn
    n_experts = len(up)
    assert got[node.outputs[0]].shape[0] == n_experts
    for e in range(n_experts):
        h = (act(a @ gate[e].T) * (a @ up[e].T)).astype(np.float64)
        want = 2 * h.T @ h / len(h)  # f32 products summed in another order: 1e-6 of the largest
        np.testing.assert_allclose(got[node.outputs[0]][e], want, atol=1e-6 * np.abs(want).max())


def test_gptq_quantizes_experts_one_by_one_and_beats_rtn_there():
    g = zoo.build("mixtral-8x22b", size="tiny", seed=0)
    batches = _zoo_calibration(g, 4, 12)
    ctx = PassContext(calibration=batches)
    result = run_pipeline(g, "quantize(method=gptq, bits=3, group=16)", ctx=ctx)
    q = result.graph
    q.verify()
    stacks = expert_stacks(g, set(g.params))
    assert stacks and all(q.params[n].type.quant is not None for n in stacks)
    assert f"{len(stacks)} expert stacks quantized expert by expert" in result.records[-1].note
    routers = [
        n
        for n in g.params
        if any(node.op == "moe_router" and node.inputs[1] is g.params[n] for node in g.nodes)
    ]
    assert routers and all(q.params[n].type.quant is None for n in routers)  # routers stay float
    rtn_graph = run_pipeline(g, "quantize(method=rtn, bits=3, group=16)").graph
    # each expert's own output error on every calibration token, summed over experts
    name = next(n for n, (_, role) in stacks.items() if role == "w_up")
    node = stacks[name][0]
    x = node.inputs[0]
    acts = [evaluate(g, feeds_for(g, ids), {x}, {})[x] for ids in batches]
    a = np.concatenate([v.reshape(-1, v.shape[-1]) for v in acts])
    w = np.asarray(g.weight(name))

    def err(graph: Graph) -> float:
        return sum(
            float(np.sum((a @ (graph.weight(name)[e] - w[e]).T) ** 2)) for e in range(len(w))
        )

    assert err(q) < 0.8 * err(rtn_graph)


@pytest.mark.parametrize("name", ["t5", "deepseek-v2"])
def test_encoder_decoders_and_latent_attention_are_calibrated_too(name):
    """GPTQ reaches the encoder of an encoder-decoder and MLA's latent projections: only the
    embedding tables are rounded to nearest, and the result runs as its dequantized twin."""
    g = zoo.build(name, size="tiny", seed=0)
    ctx = PassContext(calibration=_zoo_calibration(g))
    result = run_pipeline(g, "quantize(method=gptq, bits=4, group=16)", ctx=ctx)
    q = result.graph
    q.verify()
    linears = {n.inputs[1].param for n in g.nodes if n.op == "linear" and n.inputs[1] is not None}
    assert linears and all(q.params[p].type.quant is not None for p in linears if p)
    tables = [
        p
        for p in g.params
        if any(node.op == "embedding" and node.inputs[1] is g.params[p] for node in g.nodes)
    ]
    rounded = len([p for p in tables if p not in linears])
    note = result.records[-1].note
    assert (f"{rounded} weights not read by a linear rounded to nearest" in note) == bool(rounded)
    if name == "deepseek-v2":  # latent attention: the compressed kv projections
        assert any("kv_a" in p or "kv_b" in p for p in linears if p)
    if name == "t5":
        assert any(p and p.startswith("encoder.") for p in linears)
