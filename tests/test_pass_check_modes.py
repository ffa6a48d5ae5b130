"""--check modes: random-io (same inputs and caches into both graphs), end-to-end (own caches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from irgraph import PassError
from irgraph.ir import Graph, Node, Value
from irgraph.lm import PAST_PREFIX, PRESENT_PREFIX
from irgraph.passes import END_TO_END, Pass, PassContext, PassResult, compare, run_pipeline
from irgraph.weights import WeightStore
from tests.helpers.handbuilt import HEAD_DIM, KV_HEADS, tiny_llama

SWAP = (0, 1, 3, 2)  # [batch, kv_heads, past, head_dim] <-> [batch, kv_heads, head_dim, past]


@dataclass(frozen=True)
class TransposeCache(Pass):
    """Stores the KV cache as [batch, kv_heads, head_dim, past]: exact, but the cache shape changes.

    `scale` != 1 multiplies what goes into the cache: a bug that the prefill's
    logits cannot show, only the decode steps that read the cache back.
    """

    name = "transpose-cache"
    check_mode: ClassVar[str] = END_TO_END
    scale: float = 1.0

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        inputs, outputs = dict(graph.inputs), dict(graph.outputs)
        params, weights = dict(graph.params), {n: graph.weight(n) for n in graph.params}
        # [head_dim, 1]: broadcasts over the stored [batch, kv_heads, head_dim, past]
        scale_type = graph.params["norm.weight"].type.with_shape((HEAD_DIM, 1))
        scale = params["cache_scale"] = Value(scale_type, param="cache_scale")
        weights["cache_scale"] = np.full((HEAD_DIM, 1), self.scale, np.float32)
        head, tail = [], []
        for name, old in graph.inputs.items():
            if name.startswith(PAST_PREFIX):
                inputs[name] = Value(old.type.with_shape(_swap(old.type.shape)), hint=old.hint)
                head.append(Node("transpose", (inputs[name],), (old,), {"perm": SWAP}))
        for name, old in graph.outputs.items():
            if name.startswith(PRESENT_PREFIX):
                swapped = old.type.with_shape(_swap(old.type.shape))
                scaled = Value(swapped, hint=old.hint)
                outputs[name] = Value(swapped, hint=old.hint)
                tail.append(Node("transpose", (old,), (scaled,), {"perm": SWAP}))
                tail.append(Node("mul", (scaled, scale), (outputs[name],)))
        nodes = head + list(graph.nodes) + tail
        out = Graph(
            graph.name, inputs, params, nodes, outputs, dict(graph.meta), WeightStore(weights)
        )
        return PassResult(out, True, "cache stored as [batch, kv, head_dim, past]")


def _swap(shape: tuple) -> tuple:
    return tuple(shape[i] for i in SWAP)


def test_end_to_end_checks_a_pass_that_changes_the_cache_shape():
    g = tiny_llama()
    out = TransposeCache().apply(g, PassContext()).graph
    out.verify()
    assert out.inputs["past_key_values.0.key"].type.shape[1:3] == (KV_HEADS, HEAD_DIM)
    result = run_pipeline(g, [TransposeCache()], check=True)
    assert result.records[0].max_error is not None and result.records[0].max_error <= 1e-6


def test_random_io_refuses_a_changed_cache_and_says_what_to_use():
    with pytest.raises(PassError) as e:
        run_pipeline(tiny_llama(), [TransposeCache()], check=True, check_mode="random-io")
    text = str(e.value)
    assert text.startswith("pass transpose-cache (after: none): cannot be checked (random-io)")
    assert "check it end to end" in text and "--check-mode end-to-end" in text
    assert "past_key_values.0.key: f32[batch, 2, past, 8]" in text
    assert "past_key_values.0.key: f32[batch, 2, 8, past]" in text


def test_end_to_end_names_the_decode_step_a_cache_bug_breaks():
    g = tiny_llama()
    cmp = compare(g, TransposeCache(1.5).apply(g, PassContext()).graph, mode="end-to-end")
    assert cmp.worst.startswith("logits at decode step ") and cmp.max_error > 1e-3
    with pytest.raises(PassError, match=r"changed the outputs: logits at decode step \d"):
        run_pipeline(g, [TransposeCache(1.5)], check=True)


def test_end_to_end_agrees_for_an_exact_pass_that_keeps_the_interface():
    g = tiny_llama()
    fused = run_pipeline(g, "fuse-qkv,fuse-gate-up").graph
    assert compare(g, fused, mode="end-to-end").max_error <= 1e-6


def test_end_to_end_reports_progress_per_step():
    seen: list[tuple[int, int, str]] = []
    ctx = PassContext(progress=lambda done, total, what: seen.append((done, total, what)))
    run_pipeline(tiny_llama(), [TransposeCache()], check=True, check_steps=2, ctx=ctx)
    assert seen == [(i, 3, "transpose-cache check: end-to-end") for i in (1, 2, 3)]


def test_end_to_end_needs_a_language_model_graph():
    g = tiny_llama()
    outputs = {n: v for n, v in g.outputs.items() if n != "present.1.value"}
    partial = Graph(g.name, dict(g.inputs), g.params, g.nodes, outputs, g.meta, g.weights)
    with pytest.raises(PassError, match="needs a language-model graph.*missing present.1.value"):
        compare(partial, partial, mode="end-to-end")
    with pytest.raises(PassError, match="unknown check mode"):
        run_pipeline(g, "fuse-qkv", check=True, check_mode="exhaustive")
