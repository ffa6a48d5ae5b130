"""The zoo: 43 names, every tiny twin verifies/runs/decodes like full recompute, published sizes
build without weights, and the `irgraph zoo` verbs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import irgraph
from irgraph import model_zoo
from irgraph.analysis import cost
from irgraph.cli import main
from irgraph.errors import ConfigError
from irgraph.model_zoo.config import Arch, ModelConfig, Position

NAMES = model_zoo.names()  # the catalog is the one list; test_the_43_names checks its size
# 20 decoder tokens and 12 encoder tokens: distances reach T5's log-spaced buckets (16+ one-way
# with 32 buckets, 8+ either way in the encoder's bidirectional half), checked below.
IDS = np.array([[5, 17, 99, 200, 3, 42, 7, 8, 250, 1, 64, 33, 128, 9, 77, 180, 2, 11, 240, 36]])
ENCODER_IDS = IDS[:, :12]


def test_the_43_names():
    assert len(NAMES) == len(set(NAMES)) == 43


def _kwargs(graph: irgraph.Graph) -> dict:
    kw: dict = {}
    if "decoder_input_ids" in graph.inputs:
        kw["encoder_ids"] = ENCODER_IDS
    if "prefix_len" in graph.inputs:
        kw["prefix_len"] = np.array([4])  # 4 bidirectional tokens, 6 decoded through the cache
    return kw


@pytest.mark.parametrize("name", NAMES)
def test_tiny_twin_decodes_like_full_recompute(name):
    graph = model_zoo.build(name)
    graph.verify()
    full = irgraph.interpret(graph, IDS, **_kwargs(graph))
    cached = irgraph.interpret(graph, IDS, decode=True, **_kwargs(graph))
    assert full.shape == (1, IDS.shape[1], 256)
    assert np.isfinite(full).all() and full.std() > 1e-3  # not degenerate
    np.testing.assert_allclose(cached, full, atol=1e-5, rtol=0)


def test_decode_inputs_reach_the_log_spaced_buckets():
    relative = [n for n in NAMES if model_zoo.config(n, "tiny").position is Position.RELATIVE]
    assert "t5" in relative
    for name in relative:
        tiny = model_zoo.config(name, "tiny")
        exact = tiny.relative_buckets // 2  # one-way: distances below this are exact
        assert IDS.shape[1] - 1 >= exact, name
        if tiny.arch is Arch.ENCODER_DECODER:  # bidirectional: half the buckets each way
            assert ENCODER_IDS.shape[1] - 1 >= exact // 2, name


def _attention_width(config: ModelConfig) -> int:
    return config.heads * config.dim_per_head


@pytest.mark.parametrize("name", NAMES)
def test_tiny_twin_keeps_the_structure(name):
    published, tiny = model_zoo.config(name, "published"), model_zoo.config(name, "tiny")
    for axis in (
        "arch",
        "norm",
        "norm_placement",
        "position",
        "activation",
        "gated_mlp",
        "block",
        "qkv_bias",
        "tied_embeddings",
        "query_layer",
        "embedding_norm",
    ):
        assert getattr(tiny, axis) == getattr(published, axis), axis
    assert (tiny.moe is None) == (published.moe is None) and (tiny.mla is None) == (
        published.mla is None
    )
    assert (published.n_kv_heads == 1) == (tiny.n_kv_heads == 1)  # multi-query stays multi-query
    assert (published.n_kv_heads < published.heads) == (
        tiny.n_kv_heads < tiny.heads
    )  # grouped stays grouped
    assert (tiny.ffn == tiny.hidden) == (published.ffn == published.hidden)  # Arctic's dense MLP
    assert (tiny.logit_scale == 1) == (published.logit_scale == 1)  # T5, PaLM, Grok-1
    assert tiny.vocab_size >= 256
    # non-square attention stays non-square, in the same direction (T5 wider, PaLM narrower)
    assert np.sign(_attention_width(tiny) - tiny.hidden) == np.sign(
        _attention_width(published) - published.hidden
    )
    if published.position is Position.ALIBI:  # ALiBi's slopes branch on a power-of-two count
        assert (tiny.heads & (tiny.heads - 1) == 0) == (
            published.heads & (published.heads - 1) == 0
        )
    if published.moe is not None and published.moe.n_group > 1:
        moe = tiny.require_moe("test")  # group-limited routing has groups to drop and to keep
        per_group = moe.num_experts // moe.n_group
        kept = moe.topk_group * per_group  # experts in the kept groups
        assert moe.n_group > moe.topk_group > 1 and 1 < moe.top_k <= kept < moe.num_experts
    graph = model_zoo.build(name)
    ops = {node.op for node in graph.nodes}
    assert ("moe_experts" in ops) == (published.moe is not None)
    assert ("latent_attention" in ops) == (published.mla is not None)
    assert ("decoder_input_ids" in graph.inputs) == (published.arch is Arch.ENCODER_DECODER)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_twin_linear_inputs_are_multiples_of_32(name):
    """Quantization groups and GGUF blocks cut every linear's input into 32-wide pieces."""
    graph = model_zoo.build(name, weights=False)
    widths = []  # (op, input width)
    for node in graph.nodes:
        if node.op == "linear":
            widths.append(("linear", node.arg(1).type.shape[1]))
        elif node.op == "moe_experts":  # up/gate [E, F, D] read D; down [E, D, F] reads F
            widths += [("experts.up", node.arg(3).type.shape[2])]
            widths += [("experts.down", node.arg(4).type.shape[2])]
        elif node.op == "latent_attention":  # kv_b [heads·(nope+v), kv_rank]
            widths.append(("kv_b", node.arg(3).type.shape[1]))
    assert widths and all(isinstance(w, int) and w % 32 == 0 for _, w in widths), widths


def test_published_graphs_build_without_weights():
    glam = model_zoo.build("glam", size="published")
    c = cost(glam)
    assert glam.weights is None
    assert c.params > 1.1e12 and c.active_params < 0.1 * c.params


def test_seeded_weights_are_reproducible():
    a, b = model_zoo.build("llama-2", seed=3), model_zoo.build("llama-2", seed=3)
    c = model_zoo.build("llama-2", seed=4)
    np.testing.assert_array_equal(a.weight("embed.weight"), b.weight("embed.weight"))
    assert not np.array_equal(a.weight("embed.weight"), c.weight("embed.weight"))


def test_unknown_model_lists_the_names():
    with pytest.raises(ConfigError, match="unknown zoo model 'gpt-5'.*llama-2"):
        model_zoo.get("gpt-5")


def test_aliases_and_case():
    assert model_zoo.get("PaLM").name == "palm"


def test_cli_zoo_list_json():
    result = CliRunner().invoke(main, ["zoo", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == model_zoo.names()
    keys = {
        "name",
        "published_params",
        "survey_params",
        "params",
        "active_params",
        "flops_per_token",
        "kv_bytes_per_token",
        "params_note",
        "published_active",
        "approximate",
    }
    assert all(keys <= set(r) for r in rows)
    assert next(r for r in rows if r["name"] == "gpt-3")["approximate"]
    dsv2 = next(r for r in rows if r["name"] == "deepseek-v2")
    assert dsv2["kv_bytes_per_token"] == 60 * (512 + 64) * 2


def test_readme_lists_what_stays_approximate():
    """The README's table names exactly the entries with an `approximate` field."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("What stays approximate, and why", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1] for line in table.splitlines()[2:]]
    listed = {  # names as the README spells them, through the catalog's aliases
        model_zoo.get(name.strip().replace(" ", "-")).name
        for row in rows
        for name in row.split(",")
    }
    approximate = {n for n in NAMES if model_zoo.get(n).approximate}
    assert listed == approximate


def test_cli_zoo_build_and_run(tmp_path):
    runner = CliRunner()
    out = tmp_path / "palm"
    result = runner.invoke(main, ["zoo", "build", "palm", "-o", str(out)])
    assert result.exit_code == 0 and "seeded random" in result.output, result.output
    again = runner.invoke(main, ["zoo", "build", "palm", "-o", str(out)])
    assert again.exit_code != 0 and "--force" in again.output
    run = runner.invoke(main, ["run", str(out), "--ids", "1,2,3", "--json"])
    logits = np.asarray(json.loads(run.output)["logits"])
    np.testing.assert_allclose(
        logits, irgraph.interpret(model_zoo.build("palm"), [[1, 2, 3]])[0], atol=1e-6
    )


def test_cli_zoo_build_published_is_structure_only(tmp_path):
    result = CliRunner().invoke(
        main, ["zoo", "build", "llama-3.1", "--size", "published", "-o", str(tmp_path / "l")]
    )
    assert result.exit_code == 0 and "structure only" in result.output
    graph = irgraph.load(tmp_path / "l")
    assert graph.weights is None and cost(graph).params > 4e11


def test_cli_zoo_show():
    result = CliRunner().invoke(main, ["zoo", "show", "mixtral-8x22b", "--size", "tiny"])
    assert result.exit_code == 0
    assert "moe_router" in result.output and "active per token" in result.output
