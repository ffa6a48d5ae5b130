"""`irgraph train` on a pruned graph (issue 17): masked gradients keep every recorded pattern,
and LoRA merges as W + M⊙(α/r·BA)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

from irgraph import lm, sparsity
from irgraph.codegen.torch.trainer import TrainConfig, Trainer
from irgraph.heldout import score_windows
from irgraph.passes import run_pipeline
from irgraph.text import ByteTokenizer, load_corpus
from tests.helpers.torch_graphs import byte_llama


@pytest.fixture(scope="module")
def corpus():
    return load_corpus([Path(sysconfig.get_paths()["stdlib"]) / "json"], ByteTokenizer())


def _config(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=4, seq_len=32, lr=1e-2, warmup=1, eval_tokens=512, bf16=False)
    return TrainConfig(**{**base, **kw})


def test_full_fine_tune_keeps_the_pattern_and_moves_the_kept_weights(corpus, tmp_path):
    pruned = run_pipeline(byte_llama(), 'prune(pattern="2:4")').graph
    recs = sparsity.records(pruned)
    assert recs
    result = Trainer(pruned, corpus, _config(), tmp_path).run()
    trained = result.graph
    assert sparsity.records(trained) == recs and sparsity.check(trained) == []
    for name in recs:
        before, after = pruned.weight(name), trained.weight(name)
        np.testing.assert_array_equal(after == 0, before == 0)  # the same zeros, no others
        assert not np.array_equal(after, before)
    dense = [n for n in pruned.params if n not in recs and pruned.params[n].type.rank == 2]
    assert any(not np.array_equal(trained.weight(n), pruned.weight(n)) for n in dense)


def test_lora_merge_is_masked(corpus, tmp_path):
    pruned = run_pipeline(byte_llama(), "prune(sparsity=0.5)").graph
    targets = ("layers.*.q.weight", "layers.*.down.weight")
    trainer = Trainer(pruned, corpus, _config(lora_rank=4, lora_targets=targets), tmp_path)
    result = trainer.run()
    merged = result.graph
    assert sparsity.check(merged) == []
    # the masked merge is scored on the held-out windows beside the adapter as trained
    ref = score_windows(
        lambda ids: lm.interpret(merged, ids), trainer.heldout, bytes_per_token=1.0
    ).bits_per_byte
    assert result.merged_eval is not None and result.merged_eval.step == result.evals[-1].step
    assert result.merged_eval.bits_per_byte == pytest.approx(ref, rel=1e-4)
    assert result.merged_eval.bits_per_byte != result.evals[-1].bits_per_byte
    name = "layers.0.q.weight"
    np.testing.assert_array_equal(merged.weight(name) == 0, pruned.weight(name) == 0)
    assert not np.array_equal(merged.weight(name), pruned.weight(name))
