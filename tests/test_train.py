"""Training through the torch backend: loss falls, resume is exact, data split and CLI behave."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

import irgraph
import irgraph.model_zoo
from irgraph import ConfigError
from irgraph.cli import main
from irgraph.codegen.torch.trainer import TrainConfig, Trainer, lr_at
from irgraph.text import ByteTokenizer, load_corpus
from tests.helpers.torch_graphs import byte_llama

STDLIB_JSON = Path(sysconfig.get_paths()["stdlib"]) / "json"  # ~45 kB of Python on every machine


@pytest.fixture(scope="module")
def corpus():
    return load_corpus([STDLIB_JSON], ByteTokenizer())


def small(**kw) -> TrainConfig:
    base = dict(steps=8, batch_size=4, seq_len=32, lr=3e-3, warmup=2, eval_tokens=1024, bf16=False)
    return TrainConfig(**{**base, **kw})


def test_loss_decreases_over_a_few_dozen_steps(corpus, tmp_path):
    result = Trainer(byte_llama(), corpus, small(steps=40, batch_size=8), tmp_path).run()
    losses = [s.loss for s in result.history]
    assert np.mean(losses[-5:]) < losses[0] - 1.0
    assert result.evals[-1].loss < result.evals[0].loss - 1.0
    assert result.evals[0].bits_per_byte > 7  # untrained: about log2(256) = 8 bits per byte


def test_resume_continues_identically(corpus, tmp_path):
    config = small(checkpoint_every=4, dropout=0.1)
    straight = Trainer(byte_llama(), corpus, config, tmp_path / "a").run()

    def interrupt(step):
        if step.step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(byte_llama(), corpus, config, tmp_path / "b").run(on_step=interrupt)
    resumed = Trainer(byte_llama(), corpus, config, tmp_path / "b").run()
    assert resumed.resumed_from == 4
    assert [s.loss for s in resumed.history] == [s.loss for s in straight.history[4:]]
    for name in straight.graph.params:
        np.testing.assert_array_equal(
            resumed.graph.weight(name), straight.graph.weight(name), err_msg=name
        )


def test_checkpoints_are_safetensors_and_json(corpus, tmp_path):
    config = small(steps=4, checkpoint_every=2)
    Trainer(byte_llama(), corpus, config, tmp_path).run()
    ckpts = sorted((tmp_path / "checkpoints").iterdir())
    assert [p.name for p in ckpts] == ["step-0000002", "step-0000004"]
    assert sorted(f.name for f in ckpts[-1].iterdir()) == [
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]
    state = json.loads((ckpts[-1] / "state.json").read_text())
    assert state["step"] == 4 and state["recipe_hash"] == config.recipe_hash()
    with safe_open(ckpts[-1] / "optimizer.safetensors", "pt") as f:
        assert "layers.0.q.weight.exp_avg_sq" in f.keys()
    with pytest.raises(ConfigError, match="different recipe"):
        Trainer(byte_llama(), corpus, small(steps=4, lr=1e-2), tmp_path).run()


def test_heldout_files_are_never_trained_on(tmp_path):
    for i in range(40):
        (tmp_path / f"f{i:02d}.txt").write_text(f"file {i:02d} " * 20)
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2" * 100)  # not text: skipped
    corpus = load_corpus([tmp_path], ByteTokenizer(), heldout_fraction=0.2)
    assert corpus.train_files + corpus.heldout_files == 40 and corpus.heldout_files >= 2
    held = bytes(corpus.heldout.astype(np.uint8)).decode()
    train = bytes(corpus.train.astype(np.uint8)).decode()
    held_ids = {held[i + 5 : i + 7] for i in range(0, len(held), 160)}
    assert all(f"file {n} " not in train for n in held_ids)


def test_schedule_and_config_checks(corpus, tmp_path):
    config = small(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(config, 0) == pytest.approx(0.1) and lr_at(config, 9) == pytest.approx(1.0)
    assert lr_at(config, 99) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_dict({"steps": 3, "learning_rate": 1})
    with pytest.raises(ConfigError, match="batch size"):
        Trainer(byte_llama(), corpus, small(batch_size=5, grad_accum=2), tmp_path)


@pytest.mark.parametrize(
    "key,value",
    [
        ("lr", float("nan")),
        ("lr", float("inf")),
        ("weight_decay", float("nan")),
        ("grad_clip", float("inf")),
        ("lora_alpha", 0.0),
        ("seed", -1),
        ("eval_tokens", 0),
        ("eval_every", -1),
        ("checkpoint_every", -1),
    ],
)
def test_config_refuses_nan_inf_and_out_of_range_values(key, value):
    with pytest.raises(ConfigError, match=f"train config: {key}"):
        TrainConfig.from_dict({"steps": 3, key: value})


def test_grad_accumulation_matches_one_big_batch(corpus, tmp_path):
    one = Trainer(byte_llama(), corpus, small(steps=3), tmp_path / "a").run()
    acc = Trainer(byte_llama(), corpus, small(steps=3, grad_accum=2), tmp_path / "b").run()
    for name in one.graph.params:
        np.testing.assert_allclose(
            acc.graph.weight(name), one.graph.weight(name), atol=2e-5, err_msg=name
        )


def test_cli_train_leaves_a_runnable_graph(tmp_path):
    byte_llama().save(tmp_path / "src")
    out = tmp_path / "out"
    args = [
        "train",
        str(tmp_path / "src"),
        "--corpus",
        str(STDLIB_JSON),
        "--steps",
        "6",
        "-o",
        str(out),
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--eval-tokens",
        "512",
        "--no-bf16",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "held-out loss" in result.output
    trained = irgraph.load(out)
    summary = json.loads((out / "train.json").read_text())
    assert summary["recipe"]["steps"] == 6 and len(summary["evals"]) == 2
    assert (out / "checkpoints" / "step-0000006" / "model.safetensors").is_file()
    logits = irgraph.interpret(trained, [[104, 105]])
    assert logits.shape == (1, 2, 256) and np.isfinite(logits).all()
    again = CliRunner().invoke(main, args)  # finished run: resumes at the last step, trains nothing
    assert again.exit_code == 0 and "resumed from step 6" in again.output
    bad = CliRunner().invoke(
        main,
        [
            "train",
            str(tmp_path / "nope"),
            "--corpus",
            str(STDLIB_JSON),
            "--steps",
            "1",
            "-o",
            str(out),
        ],
    )
    assert bad.exit_code != 0


def test_bf16_autocast_trains(corpus, tmp_path):
    from irgraph.codegen.torch.trainer import bf16_supported

    if not bf16_supported():
        pytest.skip("no bf16 on this CPU")
    result = Trainer(byte_llama(), corpus, small(steps=10, bf16=True), tmp_path).run()
    assert result.history[-1].loss < result.history[0].loss
    assert all(torch.isfinite(torch.tensor(s.loss)) for s in result.history)


def test_tokenizer_json_corpus_and_bits_per_byte(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train(
        [str(p) for p in sorted(STDLIB_JSON.glob("*.py"))],
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["[UNK]"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok.save(str(tmp_path / "tokenizer.json"))
    byte_llama(vocab=400).save(tmp_path / "src")
    (tmp_path / "src" / "tokenizer.json").write_bytes((tmp_path / "tokenizer.json").read_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(tmp_path / "src"),
            "--corpus",
            str(STDLIB_JSON),
            "--steps",
            "2",
            "-o",
            str(out),
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--no-bf16",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "tokens: tokenizer.json" in result.output and (out / "tokenizer.json").is_file()
    evals = json.loads((out / "train.json").read_text())["evals"]
    bytes_per_token = evals[0]["loss"] / np.log(2) / evals[0]["bits_per_byte"]
    assert 1.5 < bytes_per_token < 6  # BPE tokens span several bytes


@pytest.mark.parametrize(
    "name", ["llama-2", "t5", "glm-130b", "deepseek-v2"]
)  # decoder, enc-dec, prefix-LM, MLA+MoE
def test_cli_trains_zoo_tiny_twins(name, tmp_path):
    out = tmp_path / name
    result = CliRunner().invoke(
        main,
        [
            "train",
            name,
            "--corpus",
            str(STDLIB_JSON),
            "--steps",
            "12",
            "-o",
            str(out),
            "--batch-size",
            "4",
            "--seq-len",
            "32",
            "--eval-tokens",
            "512",
            "--no-bf16",
            "--lr",
            "1e-2",
            "--warmup",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    evals = json.loads((out / "train.json").read_text())["evals"]
    assert evals[-1]["loss"] < evals[0]["loss"]
    assert irgraph.load(out).name == irgraph.model_zoo.build(name, size="tiny").name
