"""LoRA: adapters train with the base frozen, and merging them is exact."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

import irgraph
from irgraph import ConfigError
from irgraph.codegen.torch import numpy_runner
from irgraph.codegen.torch.lora import choose_targets
from irgraph.codegen.torch.trainer import TrainConfig, Trainer
from irgraph.lm import forward, graph_inputs
from irgraph.passes.merge_lora import LoraWeights, merge_lora
from irgraph.text import ByteTokenizer, load_corpus
from tests.helpers.torch_graphs import byte_llama

IDS = np.array([[100, 101, 102, 32, 61, 32, 49, 10]])


def test_lora_trains_adapters_only_and_merges_exactly(tmp_path):
    corpus = load_corpus([Path(sysconfig.get_paths()["stdlib"]) / "json"], ByteTokenizer())
    graph = byte_llama()
    config = TrainConfig(
        steps=10,
        batch_size=4,
        seq_len=32,
        lr=1e-2,
        warmup=1,
        eval_tokens=512,
        lora_rank=4,
        lora_targets=("layers.*.q.weight", "layers.*.v.weight", "layers.*.down.weight"),
    )
    trainer = Trainer(graph, corpus, config, tmp_path)
    result = trainer.run()
    assert result.history[-1].loss < result.history[0].loss
    trainable = sorted(n for n, p in trainer.module.named_parameters() if p.requires_grad)
    assert trainable == sorted(
        f"lora.layers.{i}.{w}.weight.lora_{ab}"
        for i in range(2)
        for w in ("q", "v", "down")
        for ab in "AB"
    )
    for name in graph.params:  # the base did not move
        np.testing.assert_array_equal(
            trainer.module.weight(name).detach().numpy(), graph.weight(name)
        )
    adapter_logits = forward(numpy_runner(trainer.module.eval()), graph_inputs(graph), IDS)
    merged = result.graph
    assert list(merged.params) == list(graph.params)  # no adapter weights left in the graph
    changed = [n for n in graph.params if not np.array_equal(merged.weight(n), graph.weight(n))]
    assert sorted(changed) == sorted(
        f"layers.{i}.{w}.weight" for i in range(2) for w in ("q", "v", "down")
    )
    merged.save(tmp_path / "merged")
    np.testing.assert_allclose(
        irgraph.interpret(irgraph.load(tmp_path / "merged"), IDS),
        adapter_logits,
        rtol=1e-5,
        atol=1e-5,
    )


def test_default_targets_skip_the_lm_head_and_bad_input_is_named():
    graph = byte_llama()
    targets = choose_targets(graph)
    assert "lm_head.weight" not in targets and "layers.1.o.weight" in targets and len(targets) == 14
    with pytest.raises(ConfigError, match="matches no linear weight"):
        choose_targets(graph, ["layers.*.qkv.weight"])
    bad = LoraWeights(np.zeros((4, 7), np.float32), np.zeros((32, 4), np.float32), 1.0)
    with pytest.raises(ConfigError, match="do not fit"):
        merge_lora(graph, {"layers.0.q.weight": bad})
    with pytest.raises(ConfigError, match="unknown weight"):
        merge_lora(graph, {"nope.weight": bad})
