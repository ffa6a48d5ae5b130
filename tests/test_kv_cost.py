"""KV bytes per token after each cache rewrite, and `irgraph inspect A --compare B --memory`."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

import irgraph.model_zoo as zoo
from irgraph.analysis import cost, kv_bytes_per_token, max_context
from irgraph.cli import main
from irgraph.ir import Graph, Value
from irgraph.kvcache import CacheContract, with_contract
from irgraph.passes import run_pipeline
from irgraph.types import parse_type


def test_mha_to_one_kv_head_on_a_32_head_model_keeps_one_32nd_of_the_cache():
    g = zoo.build("alexatm", size="published", weights=False)  # 32 heads, multi-head
    mqa = run_pipeline(g, "mha-to-gqa(kv_heads=1)", allow_arch_change=True).graph
    decoder_caches = [n for n in g.inputs if n.startswith("past_key_values.")]
    assert decoder_caches and kv_bytes_per_token(mqa) * 32 == kv_bytes_per_token(g)
    assert kv_bytes_per_token(mqa, None) * 32 == kv_bytes_per_token(g, None)
    back = run_pipeline(mqa, "gqa-to-mha").graph
    assert cost(back).kv_stored_bytes_per_token == cost(g).kv_stored_bytes_per_token


def _cache_graph(dtype: str, scales: bool, slots: str = "past") -> Graph:
    """Only inputs: what the cost model reads (one layer, 4 KV heads of 16)."""
    inputs = {}
    for part in ("key", "value"):
        name = f"past_key_values.0.{part}"
        inputs[name] = Value(parse_type(f"{dtype}[batch, 4, {slots}, 16]"))
        if scales:  # one f32 scale per head and token
            inputs[f"{name}_scale"] = Value(parse_type("f32[batch, 4, past, 1]"))
    return Graph("cache", inputs=inputs)


def test_stored_bytes_follow_the_cache_dtype_and_count_scales():
    f32, i8 = _cache_graph("f32", False), _cache_graph("i8", True)
    assert kv_bytes_per_token(f32, None) == 2 * 4 * 16 * 4
    assert kv_bytes_per_token(i8, None) == kv_bytes_per_token(f32, None) // 4 + 2 * 4 * 4
    assert kv_bytes_per_token(i8) == kv_bytes_per_token(f32) == 2 * 4 * 16 * 2  # 16-bit rule


def test_a_ring_cache_reports_its_bound_and_fits_any_context_it_holds():
    g = _cache_graph("f32", False, slots="64")
    g.meta = with_contract(g.meta, CacheContract(storage="ring", window=64))
    assert cost(g).kv_max_tokens == 64 and kv_bytes_per_token(g, None) == 2 * 4 * 16 * 4
    assert max_context(g, 64 * 512) is None and max_context(g, 63 * 512) == 63
    growing = _cache_graph("f32", False)  # a ring contract over growing caches: no bound
    growing.meta = g.meta
    assert cost(growing).kv_max_tokens is None


def test_inspect_compares_two_graphs_and_the_context_that_fits(tmp_path):
    g = zoo.build("llama-2")
    mha = run_pipeline(g, "gqa-to-mha").graph
    mha.save(tmp_path / "mha")
    runner = CliRunner()
    args = ["inspect", "llama-2", "--size", "tiny", "--compare", str(tmp_path / "mha")]
    result = runner.invoke(main, [*args, "--memory", "1MiB", "--json"])
    assert result.exit_code == 0, result.output
    a, b = json.loads(result.output)["a"], json.loads(result.output)["b"]
    assert b["kv_stored_bytes_per_token"] == 2 * a["kv_stored_bytes_per_token"]  # 2 -> 4 heads
    for s in (a, b):
        assert s["max_context"] == (2**20 - s["weight_bytes"]) // s["kv_stored_bytes_per_token"]
    text = runner.invoke(main, [*args, "--memory", "1MiB"]).output
    assert "KV bytes/token" in text and "context in 1MiB" in text and "B/A" in text
    bad = runner.invoke(main, ["inspect", "llama-2", "--memory", "lots"])
    assert bad.exit_code == 2 and "--memory" in bad.output and "8GiB" in bad.output
    assert np.isclose(
        json.loads(runner.invoke(main, [*args[:4], "--json"]).output)["kv_stored_bytes_per_token"],
        a["kv_stored_bytes_per_token"],
    )
