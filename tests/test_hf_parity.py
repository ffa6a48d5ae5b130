"""Imported Hugging Face checkpoints compute what transformers computes.

For every supported model_type (and the structural variants in tests/helpers/hf_tiny.py):
a tiny seeded random model is saved with save_pretrained (safetensors),
imported, and its logits from the reference interpreter are compared with
transformers' (eager attention, fp32) for a full prefill and for token-by-token
decode through each side's KV cache. A bf16-saved checkpoint keeps bf16
parameters in the graph and is compared with transformers run in fp32 on the
same bf16-rounded weights.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from irgraph.dtypes import DType
from irgraph.lm import interpret
from irgraph.model_zoo.hf_import import SUPPORTED, import_hf  # noqa: E402
from tests.helpers.hf_tiny import CASES, LEGACY_ROPE, VOCAB, hf_logits, make_model, save_model

TOLERANCE = 1e-4


def _inputs(model, seed: int = 3, length: int = 5) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, size=(2, length))
    encoder = (
        rng.integers(0, VOCAB, size=(2, length + 2)) if model.config.is_encoder_decoder else None
    )
    return ids, encoder


def _compare(graph, model, decode: bool, length: int = 5) -> float:
    ids, encoder = _inputs(model, length=length)
    kw = {} if encoder is None else {"encoder_ids": encoder}
    ours = interpret(graph, ids, decode=decode, **kw)
    ref = hf_logits(model, ids, decode, encoder)
    assert ours.shape == ref.shape
    assert ref.std() > 0.05, "degenerate logits would hide mapping errors"
    return float(np.abs(ours - ref).max())


def test_every_supported_model_type_has_a_case():
    import transformers

    covered = {getattr(transformers, cls).model_type for cls, _ in CASES.values()}
    assert covered == set(SUPPORTED)


@pytest.mark.parametrize("case", sorted(CASES))
def test_fp32_prefill_and_cached_decode_match_transformers(case, tmp_path):
    model = make_model(case)
    folder = save_model(model, tmp_path / case, legacy_rope=case in LEGACY_ROPE)
    graph = import_hf(folder)
    assert {v.type.dtype for v in graph.params.values()} == {DType.f32}
    for decode in (False, True):
        diff = _compare(graph, model, decode)
        assert diff <= TOLERANCE, (
            f"{case} {'decode' if decode else 'prefill'}: max |diff| {diff:.2e}"
        )


REDUCED = [(case, "bfloat16") for case in sorted(CASES)] + [
    ("llama", "float16"),
    ("t5-v1_1", "float16"),
]


@pytest.mark.parametrize("case, dtype", REDUCED)
def test_16_bit_checkpoint_matches_transformers_on_rounded_weights(case, dtype, tmp_path):
    import torch

    model = make_model(case)
    half = getattr(torch, dtype)
    copy.deepcopy(model).to(half).save_pretrained(tmp_path / case)
    with (
        torch.no_grad()
    ):  # the reference: fp32 compute on exactly the stored 16-bit values (buffers untouched)
        for p in model.parameters():
            p.copy_(p.to(half).float())
    graph = import_hf(tmp_path / case)
    assert {v.type.dtype for v in graph.params.values()} == {
        DType.bf16 if dtype == "bfloat16" else DType.f16
    }
    diff = _compare(graph, model, decode=False)
    assert diff <= TOLERANCE, f"{case} {dtype}: max |diff| {diff:.2e}"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_long_sequences_match_transformers(case, tmp_path):
    """40 tokens: past the rope scalings' original lengths, sliding window, T5's exact buckets."""
    model = make_model(case)
    graph = import_hf(save_model(model, tmp_path / case))
    for decode in (False, True):
        diff = _compare(graph, model, decode, length=40)
        assert diff <= TOLERANCE, (
            f"{case} {'decode' if decode else 'prefill'}: max |diff| {diff:.2e}"
        )


def test_sharded_checkpoint_imports_like_a_single_file(tmp_path):
    model = make_model("mixtral")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 2
    graph = import_hf(tmp_path / "sharded")
    assert _compare(graph, model, decode=False) <= TOLERANCE


def test_cli_import_and_run_show_transformers_numbers(tmp_path):
    import json

    from click.testing import CliRunner

    from irgraph.cli import main

    model = make_model("llama")
    save_model(model, tmp_path / "hf")
    runner = CliRunner()
    result = runner.invoke(main, ["import-hf", str(tmp_path / "hf"), "-o", str(tmp_path / "graph")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        main, ["run", str(tmp_path / "graph"), "--ids", "5,6,7,8", "--decode", "--json"]
    )
    assert result.exit_code == 0, result.output
    ours = np.asarray(json.loads(result.output)["logits"])
    ref = hf_logits(model, np.asarray([[5, 6, 7, 8]]), decode=True)[0]
    assert np.abs(ours - ref).max() <= TOLERANCE


@pytest.mark.parametrize("case", ["mixtral", "deepseek_v2", "gpt_neox"])
def test_transformers5_in_memory_names_import_too(case, tmp_path):
    """Tensors named the way transformers 5 holds them (stacked experts.gate_up_proj, lm_head)."""
    from safetensors.torch import save_file

    model = make_model(case)
    folder = save_model(model, tmp_path / case)
    (folder / "model.safetensors").unlink()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    assert _compare(import_hf(folder), model, decode=False) <= TOLERANCE
