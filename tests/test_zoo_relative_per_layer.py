"""GLaM's per-layer relative positional bias (issue 18): one T5 bucket table per layer, each
layer's attention reading its own; with every table equal it is T5's one shared table exactly,
prefill and cached decode. The bias op itself is checked against transformers' T5 elsewhere
(tests/test_hf_parity.py), and the GLaM twin runs through ONNX, TVM and torch in the zoo tests."""

from __future__ import annotations

import dataclasses

import numpy as np

from irgraph import lm, model_zoo
from irgraph.ir import Graph
from irgraph.model_zoo.builder import build_graph
from irgraph.weights import WeightStore


def test_each_layer_reads_its_own_bucket_table():
    g = model_zoo.build("glam", size="tiny", seed=0)
    cfg = model_zoo.config("glam", "tiny")
    tables = [n for n in g.params if n.endswith("relative_bias.weight")]
    assert tables == [f"layers.{i}.attn.relative_bias.weight" for i in range(cfg.layers)]
    biases = [n for n in g.nodes if n.op == "relative_position_bias"]
    assert [n.inputs[2].param for n in biases] == tables
    readers = [n for n in g.nodes if n.op == "attention"]
    assert [g.producers()[n.inputs[6]] for n in readers] == biases


def test_equal_tables_are_the_shared_table_exactly():
    cfg = model_zoo.config("glam", "tiny")
    per_layer = build_graph(cfg, weights="random")
    shared = build_graph(dataclasses.replace(cfg, relative_per_layer=False), weights="random")
    table = np.asarray(shared.weight("relative_bias.weight"))
    arrays = {n: per_layer.weights[n] for n in per_layer.weights}  # type: ignore[union-attr]
    for name in arrays:
        if name.endswith("relative_bias.weight"):
            arrays[name] = table
        elif name in shared.params:
            arrays[name] = shared.weight(name)
    tied = Graph(
        per_layer.name, per_layer.inputs, per_layer.params, per_layer.nodes, per_layer.outputs,
        dict(per_layer.meta), WeightStore(arrays),
    )  # fmt: skip
    ids = np.random.default_rng(0).integers(3, cfg.vocab_size, (2, 40))
    for decode in (False, True):
        np.testing.assert_array_equal(
            lm.interpret(tied, ids, decode=decode), lm.interpret(shared, ids, decode=decode)
        )
    untied = lm.interpret(per_layer, ids)
    assert np.abs(untied - lm.interpret(shared, ids)).max() > 1e-3
