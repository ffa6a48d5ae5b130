"""merge-lora: adapters saved the way `irgraph train --lora` saves them fold into the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import irgraph
from irgraph import PassError
from irgraph.codegen.torch.lora import LoraAdapters
from irgraph.passes import run_pipeline
from irgraph.passes.merge_lora import merge_lora
from irgraph.weights import save_safetensors
from tests.helpers.handbuilt import tiny_llama


def test_merge_lora_pass_matches_the_training_path(tmp_path):
    g = tiny_llama()
    targets = ["layers.0.q.weight", "layers.1.down.weight"]
    adapters = LoraAdapters(
        {n: tuple(g.params[n].type.shape) for n in targets}, rank=2, alpha=8.0, seed=0
    )
    with torch.no_grad():
        for n in targets:
            adapters.pair(n)[1].normal_(0, 0.5)  # B starts at zero; give it something to merge
    # the checkpoint layout: module tensors under their state_dict names, adapters under "lora."
    tensors = {f"lora.{k}": v.numpy() for k, v in adapters.state_dict().items()}
    tensors["embed.weight"] = np.asarray(g.weight("embed.weight"))  # other tensors are ignored
    save_safetensors(tensors, tmp_path / "model.safetensors")

    result = run_pipeline(g, f'merge-lora(adapters="{tmp_path}", alpha=8.0)', check=True)
    out = result.graph
    expected = merge_lora(g, adapters.weights())
    for n in g.params:
        np.testing.assert_allclose(out.weight(n), expected.weight(n), rtol=1e-6)
    a, b = (t.detach().numpy() for t in adapters.pair("layers.0.q.weight"))
    np.testing.assert_allclose(
        out.weight("layers.0.q.weight"),
        g.weight("layers.0.q.weight") + 4.0 * b @ a,
        rtol=1e-5,
        atol=1e-6,
    )
    rec = result.records[0]
    assert rec.kind == "approximate" and rec.max_error > 1e-3  # the adapters' effect, measured
    ids = [[1, 2, 3]]
    np.testing.assert_allclose(
        irgraph.interpret(out, ids), irgraph.interpret(expected, ids), atol=1e-5
    )


def test_merge_lora_needs_an_adapter_file(tmp_path):
    with pytest.raises(PassError, match="merge-lora needs adapters=FILE"):
        run_pipeline(tiny_llama(), "merge-lora")
    save_safetensors({"x": np.zeros(2, np.float32)}, tmp_path / "a.safetensors")
    with pytest.raises(PassError, match="no LoRA adapters in the file"):
        run_pipeline(tiny_llama(), f"merge-lora(adapters={tmp_path / 'a.safetensors'})")
