"""kv-layout: the per-head cache stored as bsnh (and back), exact end to end, in the contract."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph.analysis import kv_bytes_per_token
from irgraph.kvcache import contract_of, manifest_entry
from irgraph.lm import graph_inputs, interpret
from irgraph.passes import run_pipeline
from tests.helpers.handbuilt import HEAD_DIM, KV_HEADS, tiny_llama


def relaid(g, layout: str = "bsnh"):
    result = run_pipeline(g, f"kv-layout(layout={layout})", check=True, check_steps=16)
    (record,) = result.records
    assert record.modified and record.max_error is not None and record.max_error <= 1e-5
    return result.graph


def test_bsnh_cache_is_exact_and_stated_in_the_contract():
    g = tiny_llama()
    out = relaid(g)
    text = str(out)
    assert f"input %past_key_values.0.key: f32[batch, past, {KV_HEADS}, {HEAD_DIM}]" in text
    assert "= transpose(%past_key_values.0.key) {perm=[0, 2, 1, 3]}" in text
    assert (
        str(out.outputs["present.1.value"].type) == f"f32[batch, past+seq, {KV_HEADS}, {HEAD_DIM}]"
    )
    assert contract_of(out.meta).layout == "bsnh" and out.meta["kv_cache_layout"] == "bsnh"
    entry = manifest_entry(out.meta, graph_inputs(out))
    assert entry["layout"] == "bsnh" and entry["seq_axis"]["past_key_values.0.key"] == 1
    assert kv_bytes_per_token(out) == kv_bytes_per_token(g)
    ids = np.random.default_rng(0).integers(0, 64, size=(2, 7))
    np.testing.assert_allclose(
        interpret(out, ids, decode=True), interpret(g, ids, decode=True), atol=1e-6
    )


def test_converting_back_removes_the_transposes():
    g = tiny_llama()
    back = relaid(relaid(g), "bnsh")
    assert str(back) == str(g)
    (record,) = run_pipeline(g, "kv-layout(layout=bnsh)").records
    assert not record.modified and record.note == "the cache is already bnsh"


def test_latent_caches_have_one_layout():
    (record,) = run_pipeline(zoo.build("deepseek-v2"), "kv-layout").records
    assert not record.modified and "no per-head KV cache" in record.note


def test_bad_layout_is_one_clear_error():
    from irgraph import PassError

    with pytest.raises(PassError, match="option 'layout' of pass kv-layout"):
        run_pipeline(tiny_llama(), "kv-layout(layout=nhsb)")


@pytest.mark.parametrize(
    "name",
    [
        "llama-2",
        "t5",
        *(pytest.param(n, marks=pytest.mark.slow) for n in ("palm", "bloom", "glm-130b", "opt")),
    ],
)
def test_bsnh_is_exact_end_to_end_on_zoo_twins(name):
    relaid(zoo.build(name))


def test_onnx_artifact_of_a_bsnh_graph_decodes_like_the_interpreter(tmp_path):
    import json

    import irgraph.runtimes
    from irgraph.codegen.onnx import compile_graph

    g = relaid(tiny_llama())
    art = compile_graph(g, tmp_path / "onnx")
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["kv_cache"]["layout"] == "bsnh" and not manifest["onnx"]["share_buffer"]
    assert not (art / "genai_config.json").exists()  # genai drives concat bnsh only
    session = irgraph.runtimes.open(art)
    ids = np.random.default_rng(1).integers(0, 64, size=(2, 6))
    np.testing.assert_allclose(
        session.forward(ids, decode=True), interpret(g, ids, decode=True), atol=1e-4
    )
    assert len(session.generate([[1, 2, 3], [4, 5]], 4)[0]) == 4
