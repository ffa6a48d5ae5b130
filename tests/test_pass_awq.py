"""quantize(method=awq) (issue 13): folding keeps the float function, the scale search never
loses to α = 0, AWQ beats RTN where inputs have outlier channels, and its options."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import lm
from irgraph.dtypes import DType
from irgraph.errors import PassError
from irgraph.ir import Graph
from irgraph.passes import PassContext, run_pipeline
from irgraph.passes.calibrate import evaluate, expert_hidden, expert_stacks, feeds_for
from irgraph.passes.quantize import awq
from irgraph.quant import QuantSpec
from irgraph.weights import WeightStore
from tests.helpers.handbuilt import VOCAB, tiny_llama

SPEC = QuantSpec(3, 8, True, DType.f16)
SPECS_OF = {"bits": 3, "group": 8}


def _calibration(n: int = 3, seq: int = 16, vocab: int = VOCAB) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [rng.integers(0, vocab, (2, seq)) for _ in range(n)]


def _outliers(g: Graph) -> Graph:
    """tiny_llama whose norm weights make a few input channels of every linear 20x larger."""
    arrays = {n: np.asarray(g.weights[n]) for n in g.weights}  # type: ignore[union-attr]
    for name in arrays:
        if name.endswith("norm.weight"):
            arrays[name] = arrays[name].copy()
            arrays[name][[3, 17, 30]] *= 20.0
    return Graph(
        g.name, dict(g.inputs), dict(g.params), list(g.nodes), dict(g.outputs), dict(g.meta),
        WeightStore(arrays),
    )  # fmt: skip


def _specs(g: Graph) -> dict[str, QuantSpec]:
    return {n: SPEC for n, v in g.params.items() if v.type.rank == 2 and n != "embed.weight"}


class _Pass:
    name = "quantize"


@pytest.mark.parametrize(
    "outliers, pow2, tol", [(False, False, 1e-6), (True, False, 1e-5), (True, True, 1e-6)]
)
def test_folding_leaves_the_float_graph_unchanged(outliers, pow2, tol, monkeypatch):
    """Logits agree to fp32 rounding: max |Δ| <= tol · max |logits| (measured 5e-7 plain, 4.6e-6
    with 20x outlier channels, whose scales reach ~20). With scales rounded to powers of two the
    folding is exact in fp32, so only a wrong fold could move the logits."""
    if pow2:
        exact = awq.channel_scales
        monkeypatch.setattr(
            awq, "channel_scales", lambda m, a: np.exp2(np.round(np.log2(exact(m, a))))
        )
    g = _outliers(tiny_llama()) if outliers else tiny_llama()
    ctx = PassContext(calibration=_calibration())
    scaled, groups, _, notes = awq.scale_graph(g, _specs(g), 20, ctx, _Pass())
    ids = _calibration(1)[0]
    for decode in (False, True):
        want = lm.interpret(g, ids, decode=decode)
        got = lm.interpret(scaled, ids, decode=decode)
        assert np.abs(got - want).max() <= tol * np.abs(want).max()
    # the norms and the up rows took the scales: the weights did change
    moved = [n for n in g.params if not np.array_equal(scaled.weight(n), g.weight(n))]
    assert "layers.0.attn_norm.weight" in moved and "layers.0.up.weight" in moved
    assert "norm.weight" in moved  # the LM head's group folds into the final norm
    folded = {gr.params: gr.why_not for gr in groups}
    assert folded[("layers.0.q.weight", "layers.0.k.weight", "layers.0.v.weight")] == ""
    assert folded[("layers.0.down.weight",)] == ""
    assert "reshape" in folded[("layers.0.o.weight",)]  # v→o is not scaled: the KV cache
    assert any("@layers.1.o.weight (it is produced by reshape" in n for n in notes)


def test_chosen_scales_are_never_worse_than_alpha_zero():
    g = _outliers(tiny_llama())
    specs = _specs(g)
    groups = [gr for gr in awq.find_groups(g, list(specs)) if not gr.why_not]
    feeds = feeds_for(g, np.concatenate(_calibration()))
    values = evaluate(g, feeds, {gr.x for gr in groups}, {})
    strictly = 0
    for gr in groups:
        xs = values[gr.x].reshape(-1, values[gr.x].shape[-1])
        ws = [np.asarray(g.weight(n), np.float32) for n in gr.params]
        s, alpha, losses = awq.search_scale(xs, np.abs(xs).mean(0), ws, [SPEC] * len(ws), 20)
        plain = awq.scale_loss(xs, ws, [SPEC] * len(ws), np.ones(xs.shape[-1], np.float32))
        assert losses[0] == pytest.approx(plain)  # α = 0 is plain rounding
        assert awq.scale_loss(xs, ws, [SPEC] * len(ws), s) <= plain
        strictly += awq.scale_loss(xs, ws, [SPEC] * len(ws), s) < 0.9 * plain
    assert strictly >= len(groups) // 2  # outlier channels: scaling pays on most groups


def test_clip_search_never_worse_than_no_clip():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 20)).astype(np.float32)
    w[0, 2] = 9.0  # one large weight stretches its group's grid
    xs = rng.standard_normal((64, 20)).astype(np.float32)
    clipped = awq.search_clip(w, xs, SPEC, 20)

    def err(a: np.ndarray) -> float:
        return float(np.mean((xs @ awq.fake_quant(a, SPEC).T - xs @ w.T) ** 2))

    assert err(clipped) <= err(w) and np.abs(clipped).max() <= np.abs(w).max()


def _error(g: Graph, q: Graph, batches: list[np.ndarray]) -> float:
    ids = np.concatenate(batches)
    return float(np.mean((lm.interpret(q, ids) - lm.interpret(g, ids)) ** 2))


def test_awq_beats_rtn_with_outlier_channels_and_reports():
    g = _outliers(tiny_llama())
    seen: list[str] = []
    ctx = PassContext(calibration=_calibration(), progress=lambda d, t, what: seen.append(what))
    result = run_pipeline(g, "quantize(method=awq, bits=3, group=8)", ctx=ctx, check=False)
    rtn_graph = run_pipeline(g, "quantize(method=rtn, bits=3, group=8)").graph
    q = result.graph
    assert str(q.params["layers.0.q.weight"].type) == "i4<b3,g8,sym,f16>[32, 32]"
    assert str(q.params["layers.0.attn_norm.weight"].type) == "f32[32]"  # norms stay float
    # measured: 0.79x RTN's logits error (the per-linear objective gave 0.66x here; on the
    # reference model's held-out bytes the two are within noise of each other)
    assert _error(g, q, _calibration()) < 0.85 * _error(g, rtn_graph, _calibration())
    # per layer too: the first q projection's output on the calibration data
    feeds = feeds_for(g, np.concatenate(_calibration()))
    q_out = [n.outputs[0] for n in g.nodes if n.op == "linear"][0]
    want = evaluate(g, feeds, {q_out}, {})[q_out]

    def layer_error(graph: Graph) -> float:
        current = {n: np.asarray(graph.weight(n)) for n in graph.params}
        return float(np.mean((evaluate(g, feeds, {q_out}, current)[q_out] - want) ** 2))

    assert layer_error(q) <= layer_error(rtn_graph)
    assert "quantize: awq statistics" in seen and "quantize: awq clip" in seen
    assert "not scaled: @layers.0.o.weight" in result.records[-1].note


@pytest.mark.parametrize("name", ["palm", "opt"])
def test_parallel_block_and_relu_mlp_fold_exactly(name, monkeypatch):
    """PaLM: q/k/v and gate/up read one shared norm, scaled jointly; OPT: fc2's scale passes
    through relu into fc1's rows. Power-of-two scales: the fold is exact in fp32."""
    exact = awq.channel_scales
    monkeypatch.setattr(awq, "channel_scales", lambda m, a: np.exp2(np.round(np.log2(exact(m, a)))))
    g = zoo.build(name, size="tiny", seed=0)
    vocab = min(int(g.meta["vocab_size"]), 50)
    specs = {n: SPEC for n in awq.linear_inputs(g, set(g.params))}
    ctx = PassContext(calibration=_calibration(2, 8, vocab))
    scaled, groups, _, _ = awq.scale_graph(g, specs, 20, ctx, _Pass())
    sizes = {len(gr.params) for gr in groups if not gr.why_not}
    assert (
        (5 in sizes)
        if name == "palm"
        else any(gr.rows and "down" in gr.params[0] for gr in groups if not gr.why_not)
    )
    ids = _calibration(1, 6, vocab)[0]
    want = lm.interpret(g, ids)
    assert np.abs(lm.interpret(scaled, ids) - want).max() <= 1e-6 * np.abs(want).max()


def test_awq_needs_calibration_and_its_grid_is_refused_elsewhere():
    with pytest.raises(PassError, match="needs calibration data.*--calibration"):
        run_pipeline(tiny_llama(), "quantize(method=awq)")
    for method in ("rtn", "gptq"):
        with pytest.raises(
            PassError, match=f"grid of pass quantize are not used by method={method}"
        ):
            run_pipeline(tiny_llama(), f"quantize(method={method}, grid=10)")


def test_experts_are_clipped_one_by_one_on_every_token():
    """MoE stacks are not scaled (the router reads their input too) but each expert is clipped
    on every calibration token; its output error over all tokens does not exceed RTN's."""
    g = zoo.build("mixtral-8x22b", size="tiny", seed=0)
    batches = _calibration(3, 12, vocab=50)
    ctx = PassContext(calibration=batches)
    result = run_pipeline(g, "quantize(method=awq, bits=3, group=16)", ctx=ctx)
    stacks = expert_stacks(g, set(g.params))
    assert f"{len(stacks)} expert stacks clipped expert by expert" in result.records[-1].note
    rtn_graph = run_pipeline(g, "quantize(method=rtn, bits=3, group=16)").graph
    for name, (node, role) in stacks.items():
        x = node.inputs[0]
        acts = [evaluate(g, feeds_for(g, ids), {x}, {})[x] for ids in batches]
        a = np.concatenate([v.reshape(-1, v.shape[-1]) for v in acts])
        w = np.asarray(g.weight(name))
        xs = [expert_hidden(node, a, g.weight, e) if role == "w_down" else a for e in range(len(w))]
        err = [
            sum(float(np.sum((xs[e] @ (q.weight(name)[e] - w[e]).T) ** 2)) for e in range(len(w)))
            for q in (result.graph, rtn_graph)
        ]
        assert err[0] < err[1], name


def test_block_objective_measures_where_the_block_rejoins_the_stream():
    from irgraph.passes.quantize.awq_block import BlockLoss, block_output
    from irgraph.passes.scale_fold import find_groups

    g = tiny_llama()
    groups = {gr.params: gr for gr in find_groups(g, list(_specs(g)))}
    producers = g.producers()
    qkv = groups[("layers.0.q.weight", "layers.0.k.weight", "layers.0.v.weight")]
    gate_up = next(gr for p, gr in groups.items() if "layers.0.gate.weight" in p)
    for gr, last in ((qkv, "layers.0.o.weight"), (gate_up, "layers.0.down.weight")):
        span = block_output(g, gr)
        assert span is not None
        add = producers[span[2]]
        assert add.op == "add" and g.nodes.index(add) == span[1] - 1
        branch = next(v for v in add.inputs if v is not None and producers[v].op == "linear")
        assert producers[branch].inputs[1].param == last  # attention after o; MLP after down
    down = next(gr for p, gr in groups.items() if "layers.0.down.weight" in p)
    assert block_output(g, down) is None  # read through glu, not a norm: per-linear objective
    windows = _calibration()[:2]
    block = BlockLoss(g, block_output(g, qkv), windows, {})
    assert block({}) == 0.0
    w = np.asarray(g.weight("layers.0.q.weight"))
    assert block({"layers.0.q.weight": 1.01 * w}) > 0.0
