"""Structured pruning (issue 17): prune-ffn and drop-layers shrink the graph; the pruned tiny
LLaMA-2 (GQA), Mixtral (MoE), T5 (enc-dec) and an HF-imported Falcon-7B form (MQA + parallel
attention) compile to ONNX and TVM and match the interpreter on the pruned graph; removing what
has zero importance is exact (end-to-end check); bad input."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import lm
from irgraph.errors import PassError
from irgraph.ir import Graph
from irgraph.passes import PassContext, compare, run_pipeline
from irgraph.passes.prune.heads import head_sites, removal
from irgraph.passes.prune.layers import residual_blocks
from irgraph.passes.prune.shrink import ffn_groups
from irgraph.weights import WeightStore

MODELS = ["llama-2", "mixtral-8x22b", "t5"]


def _calibration(n: int = 2, seq: int = 10) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(1, 50, (2, seq)) for _ in range(n)]


def _run(graph: Graph, spec: str, **kw) -> Graph:
    ctx = PassContext(calibration=_calibration(), **kw)
    return run_pipeline(graph, spec, ctx=ctx, allow_arch_change=True).graph


def _with(graph: Graph, arrays: dict[str, np.ndarray]) -> Graph:
    assert graph.weights is not None
    store = WeightStore({n: arrays.get(n, graph.weights[n]) for n in graph.stored_names()})
    return Graph(
        graph.name,
        graph.inputs,
        graph.params,
        graph.nodes,
        graph.outputs,
        dict(graph.meta),
        store,
    )


def _feeds(graph: Graph) -> tuple[np.ndarray, dict]:
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, (2, 5))
    kw = {}
    if lm.is_encoder_decoder({n: v.type for n, v in graph.inputs.items()}):
        kw["encoder_ids"] = rng.integers(1, 50, (2, 4))
    return ids, kw


@pytest.mark.parametrize("name", MODELS)
def test_prune_ffn_shrinks_every_ffn_consistently(name):
    g = zoo.build(name, size="tiny", seed=0)
    groups = ffn_groups(g)
    assert len(groups) == (4 if name == "t5" else 2)
    p = _run(g, "prune-ffn(fraction=0.25)")
    for grp in groups:
        f = g.params[grp.down].type.shape[-1]
        assert p.params[grp.down].type.shape[-1] == f - f // 4
        for row in grp.rows:
            assert p.params[row].type.shape[-2] == f - f // 4
    moe = [grp for grp in groups if grp.moe is not None]
    assert bool(moe) == (name == "mixtral-8x22b")
    for grp in moe:  # each expert keeps its own channels: rows of the stack are a subset
        up, up_p = g.weight(grp.rows[0]), p.weight(grp.rows[0])
        for e in range(up.shape[0]):
            assert all(any(np.array_equal(r, s) for s in up[e]) for r in up_p[e])


def _zero_channels(g: Graph, k: int) -> tuple[Graph, dict[str, list[int]]]:
    """g with the down columns of k channels (per expert: different ones) set to zero."""
    rng = np.random.default_rng(1)
    arrays, chosen = {}, {}
    for grp in ffn_groups(g):
        down = np.array(g.weight(grp.down))
        f = down.shape[-1]
        if grp.moe is None:
            idx = sorted(rng.choice(f, k, replace=False).tolist())
            down[:, idx] = 0.0
        else:
            for e in range(down.shape[0]):
                idx = sorted(rng.choice(f, k, replace=False).tolist())
                down[e][:, idx] = 0.0
        arrays[grp.down] = down
        chosen[grp.down] = idx
    return _with(g, arrays), chosen


@pytest.mark.parametrize("name", MODELS)
def test_removing_zero_importance_channels_is_exact_end_to_end(name):
    g = zoo.build(name, size="tiny", seed=0)
    f = g.params[ffn_groups(g)[0].down].type.shape[-1]
    z, _ = _zero_channels(g, f // 4)
    ctx = PassContext(calibration=_calibration())
    result = run_pipeline(
        z,
        "prune-ffn(fraction=0.25)",
        ctx=ctx,
        allow_arch_change=True,
        check=True,
        check_mode="end-to-end",
    )
    assert result.records[0].max_error is not None and result.records[0].max_error <= 1e-5
    assert all(not np.any(result.graph.weight(grp.down) == 0) for grp in ffn_groups(result.graph))
    # and something that matters changes the outputs: the same fraction on the original graph
    assert compare(g, _run(g, "prune-ffn(fraction=0.25)"), mode="end-to-end").max_error > 1e-3


def test_residual_blocks_follow_the_stacks():
    assert [b.stack for b in residual_blocks(zoo.build("t5", size="tiny"))] == [0, 0, 1, 1]
    assert [b.stack for b in residual_blocks(zoo.build("palm", size="tiny"))] == [0, 0]  # parallel


@pytest.mark.parametrize("name", ["llama-2", "mixtral-8x22b"])
def test_dropping_a_block_that_adds_nothing_is_exact(name):
    g = zoo.build(name, size="tiny", seed=0)
    # block 0 adds zero to the stream: its attention output and FFN down projection are zero
    zeroed = {
        n: np.zeros(g.params[n].type.shape, np.float32)  # type: ignore[arg-type]
        for n in g.params
        if n.startswith("layers.0.") and (n.endswith("o.weight") or "down" in n)
    }
    assert len(zeroed) == 2
    z = _with(g, zeroed)
    ctx = PassContext(calibration=_calibration())
    result = run_pipeline(z, "drop-layers", ctx=ctx, allow_arch_change=True, check=True)
    out = result.graph
    assert result.records[0].max_error is not None and result.records[0].max_error <= 1e-5
    assert "dropped 1 of 2 blocks: #0 (0)" in result.records[0].note
    assert [k for k in out.inputs if k.startswith("past")] == [
        "past_key_values.0.key",
        "past_key_values.0.value",
    ]
    assert not any(p.startswith("layers.0.") for p in out.params)
    assert out.inputs["past_key_values.0.key"] is z.inputs["past_key_values.1.key"]


def _backends_match(graph: Graph, tmp_path) -> None:
    from irgraph.codegen.onnx import compile_graph as onnx_compile
    from irgraph.codegen.tvm.artifact import compile_graph as tvm_compile
    from irgraph.runtimes.onnx import ORTSession
    from irgraph.runtimes.tvm import TVMSession

    ids, kw = _feeds(graph)
    sessions = {
        "onnx": ORTSession(onnx_compile(graph, tmp_path / "onnx")),
        "tvm": TVMSession(tvm_compile(graph, tmp_path / "tvm", target="tvm-llvm")),
    }
    for backend, session in sessions.items():
        for decode in (False, True):
            np.testing.assert_allclose(
                session.forward(ids, decode=decode, **kw),
                lm.interpret(graph, ids, decode=decode, **kw),
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{graph.name} {backend} decode={decode}",
            )


@pytest.mark.parametrize(
    "name", ["llama-2", *(pytest.param(n, marks=pytest.mark.slow) for n in MODELS[1:])]
)
def test_pruned_models_compile_and_match_the_interpreter(name, tmp_path):
    g = zoo.build(name, size="tiny", seed=0)
    heads = "prune-heads(fraction=0.25)" if name == "t5" else "prune-heads(fraction=0.5)"
    pruned = _run(g, f"prune-ffn(fraction=0.25),{heads},drop-layers")
    pruned.verify()
    _backends_match(pruned, tmp_path)


def test_pruned_falcon_form_import_compiles_and_matches_the_interpreter(tmp_path):
    """MQA + parallel attention from an HF checkpoint: query heads go (the one KV head stays),
    the FFN shrinks, a block is dropped; every backend matches the interpreter."""
    from irgraph.model_zoo.hf_import import import_hf
    from tests.helpers.hf_tiny import make_model, save_model

    g = import_hf(save_model(make_model("falcon-7b"), tmp_path / "hf"))
    sites, _ = head_sites(g)
    assert [(s.heads, s.kv_heads) for s in sites] == [(4, 1), (4, 1)]
    pruned = _run(g, "prune-heads(fraction=0.5),prune-ffn(fraction=0.25),drop-layers")
    pruned.verify()
    kept, _ = head_sites(pruned)
    assert [(s.heads, s.kv_heads) for s in kept] == [(2, 1)]
    assert pruned.inputs["past_key_values.0.key"].type.shape[1] == 1
    _backends_match(pruned, tmp_path)


class _Gradients:
    """A gradient provider for tests: the gradient of every weight is 1."""

    def __init__(self) -> None:
        self.calls = 0

    def gradients(self, graph, batches):
        self.calls += 1
        return {n: np.ones(np.asarray(graph.weight(n)).shape) for n in graph.params}


def test_taylor_importance_comes_from_the_context_provider():
    g = zoo.build("llama-2", size="tiny", seed=0)
    provider = _Gradients()
    p = _run(g, "prune-ffn(fraction=0.5, by=taylor)", gradients=provider)
    assert provider.calls == 1
    grp = ffn_groups(g)[0]
    w = {n: np.asarray(g.weight(n), np.float64) for n in grp.params}
    score = np.abs(sum(w[r].sum(axis=1) for r in grp.rows) + w[grp.down].sum(axis=0))
    kept = np.sort(np.argsort(-score, kind="stable")[: len(score) // 2])
    np.testing.assert_array_equal(p.weight(grp.down), g.weight(grp.down)[:, kept])
    with pytest.raises(PassError, match="needs the 'gradients' provider"):
        _run(g, "prune-ffn(by=taylor)")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("prune-ffn(fraction=1.0)", "every channel of an FFN would go"),
        ("drop-layers(n=2)", "drop-layers would drop every block"),
        ("drop-layers(n=0)", "option 'n' of pass drop-layers"),
        ("prune-heads(fraction=1.0)", "every head of a layer would go"),
    ],
)
def test_bad_structured_options(spec, message):
    with pytest.raises(PassError, match=message):
        _run(zoo.build("llama-2", size="tiny"), spec)


def test_drop_layers_keeps_a_block_in_every_stack():
    with pytest.raises(PassError, match="every block of a stack"):
        _run(zoo.build("t5", size="tiny"), "drop-layers(n=3)")


def test_structured_passes_need_arch_change():
    with pytest.raises(PassError, match="changes the architecture"):
        run_pipeline(zoo.build("llama-2", size="tiny"), "prune-ffn")


@pytest.mark.parametrize(
    "heads, kv, n, want",
    [
        (8, 8, 3, (3, "groups")),  # MHA: heads go with their keys and values
        (8, 1, 3, (3, "heads")),  # MQA: query heads only
        (8, 2, 4, (4, "groups")),  # GQA, G = 4: one whole KV group
        (8, 2, 2, (2, "per-group")),  # one query head from each group
        (8, 2, 3, (2, "per-group")),  # rounded down to a valid count
        (12, 4, 6, (6, "groups")),  # G = 3: two whole groups
        (12, 4, 4, (4, "per-group")),  # 4 = KV: one from each group
        (4, 2, 1, (0, "groups")),
    ],
)
def test_head_removal_keeps_the_grouping_valid(heads, kv, n, want):
    assert removal(heads, kv, n) == want


def test_removing_a_silent_kv_group_is_exact_and_shrinks_the_cache():
    g = zoo.build("llama-2", size="tiny", seed=0)
    sites, skipped = head_sites(g)
    assert len(sites) == 2 and skipped == 0
    s = sites[0]
    assert (s.heads, s.kv_heads, s.head_dim) == (4, 2, 16)
    silenced = {}
    for site in sites:  # query heads 2 and 3 (KV group 1) of every attention add nothing
        silenced[site.o] = np.array(g.weight(site.o))
        silenced[site.o][:, 32:64] = 0.0
    z = _with(g, silenced)
    wo = silenced[s.o]
    ctx = PassContext(calibration=_calibration())
    result = run_pipeline(
        z, "prune-heads(fraction=0.5)", ctx=ctx, allow_arch_change=True, check=True
    )
    out = result.graph
    assert result.records[0].max_error is not None and result.records[0].max_error <= 1e-5
    assert str(out.inputs["past_key_values.0.key"].type) == "f32[batch, 1, past, 16]"
    assert out.params[s.q.weight].type.shape == (32, 64)
    np.testing.assert_array_equal(out.weight(s.k.weight), g.weight(s.k.weight)[:16])
    np.testing.assert_array_equal(out.weight(s.o), wo[:, :32])
