"""`irgraph view`: the page's structure, its totals against `inspect --json`, and pass diffs.

The browser check (headless Chromium renders the page without console errors) is in
tests/test_view_browser.py, slow tier.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from click.testing import CliRunner

import irgraph
from irgraph import model_zoo
from irgraph.analysis import cost
from irgraph.cli import main
from irgraph.passes import run_pipeline
from irgraph.view.data import layer_of, view_data
from irgraph.view.diff import recorded_diff, structural_diff
from irgraph.view.html import embedded_data, render

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?https?:|@import""")
COSTS = ("prefill_flops", "decode_flops", "weight_bytes", "kv_bytes_per_token")


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    """Tiny LLaMA-2 saved, fuse-qkv'd by `opt --view`, and viewed with --diff."""
    root = tmp_path_factory.mktemp("view")
    irgraph.save(model_zoo.build("llama-2", size="tiny"), root / "a")
    result = invoke(
        "opt", root / "a", "--passes", "fuse-qkv", "-o", root / "b", "--view", root / "rec.html"
    )
    assert result.exit_code == 0, result.output
    result = invoke("view", root / "a", "--diff", root / "b", "-o", root / "diff.html")
    assert result.exit_code == 0, result.output
    return root


def page_data(path) -> tuple[str, dict]:
    page = path.read_text(encoding="utf-8")
    return page, embedded_data(page)


def test_page_is_self_contained_and_totals_are_inspects(fused):
    page, data = page_data(fused / "rec.html")
    assert page.startswith("<!DOCTYPE html>") and "dagre" in page
    assert not EXTERNAL.search(page) and "<script src" not in page and "<link" not in page
    result = invoke("inspect", fused / "b", "--json")
    stats = json.loads(result.output)
    totals = data["totals"]
    for key in ("nodes", "params", "active_params", "weight_bytes", "kv_bytes_per_token"):
        assert totals[key] == stats[key], key
    assert totals["prefill_flops_per_token"] == stats["prefill_flops_per_token"]
    assert totals["decode_flops_per_token"] == stats["decode_flops_per_token"]
    drawn = [n for n in data["nodes"] if n.get("status") != "removed"]
    assert len(drawn) == stats["nodes"] == 39
    sums = {k: sum(n["cost"][k] for n in drawn) for k in COSTS}
    assert sums["prefill_flops"] / stats["context"] == stats["prefill_flops_per_token"]
    assert sums["decode_flops"] == stats["decode_flops_per_token"]
    assert sums["weight_bytes"] == stats["weight_bytes"]
    assert sums["kv_bytes_per_token"] == stats["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 2


def test_fuse_qkv_recorded_and_structural_diffs_agree(fused):
    _, recorded = page_data(fused / "rec.html")
    _, structural = page_data(fused / "diff.html")
    assert recorded["diff"]["mode"] == "recorded" and structural["diff"]["mode"] == "structural"

    def marks(data):
        return [(n["id"], n["op"], n.get("status"), n["block"]) for n in data["nodes"]]

    assert marks(recorded) == marks(structural)
    changed = Counter((n["status"], n["op"]) for n in recorded["nodes"] if n.get("status"))
    # per layer: q/k/v linears -> one linear + split; the three reshapes read the split
    assert changed == {
        ("added", "linear"): 2,
        ("added", "split"): 2,
        ("rewritten", "reshape"): 6,
        ("removed", "linear"): 6,
    }
    assert {recorded["diff"][k] for k in ("added", "rewritten", "removed")} == {4, 6}
    removed = [n for n in recorded["nodes"] if n.get("status") == "removed"]
    assert [n["params"][0][0] for n in removed[:3]] == [
        "layers.0.attn.q.weight",
        "layers.0.attn.k.weight",
        "layers.0.attn.v.weight",
    ]
    assert all(len(n["in"]) == 1 for n in removed)  # wired to the norm they read


def test_diff_of_a_graph_with_itself_is_empty():
    graph = model_zoo.build("deepseek-v2", size="tiny", weights=False)
    again = model_zoo.build("deepseek-v2", size="tiny", weights=False)
    diff = structural_diff(graph, again)
    assert diff.counts() == {"added": 0, "rewritten": 0, "removed": 0}
    assert recorded_diff(graph, graph).counts() == diff.counts()


def test_diff_agrees_on_mla_fusion(tmp_path):
    graph = model_zoo.build("deepseek-v2", size="tiny", weights=False)
    after = run_pipeline(graph, "fuse-qkv,fuse-gate-up").graph
    irgraph.save(graph, tmp_path / "a")
    irgraph.save(after, tmp_path / "b")
    rec = recorded_diff(graph, after)
    a, b = irgraph.load(tmp_path / "a"), irgraph.load(tmp_path / "b")
    st = structural_diff(a, b)
    assert rec.counts() == st.counts() and rec.counts()["added"] > 0
    assert [rec.status.get(n) for n in after.nodes] == [st.status.get(n) for n in b.nodes]


def test_layers_fold_into_blocks():
    assert layer_of("layers.12.attn.q.weight") == "layers.12"
    assert layer_of("encoder.layers.3.mlp.up.weight") == "encoder.layers.3"
    assert layer_of("layers.0.mlp.experts.7.up") == "layers.0"
    assert layer_of("embed.weight") is None
    graph = model_zoo.build("llama-2", size="published", weights=False)
    data = view_data(graph)
    blocks = Counter(n["block"] for n in data["nodes"])
    layers = sum(1 for name in graph.inputs if name.endswith(".key"))  # one cache per layer
    assert len([b for b in blocks if b]) == layers == 80
    assert len({c for b, c in blocks.items() if b}) == 1  # every layer the same size
    ops = {n["op"] for n in data["nodes"] if n["block"] == "layers.0"}
    assert {"attention", "linear", "rms_norm", "add"} <= ops
    past = [v for v in data["inputs"] if v["name"].startswith("past_key_values.0.")]
    assert past and all(v["block"] == "layers.0" for v in past)


@pytest.mark.parametrize("name", ["llama-3.1", "palm", "deepseek-v2"])
def test_published_zoo_pages_stay_under_5_mb(name):
    graph = model_zoo.build(name, size="published", weights=False)
    page = render(view_data(graph))
    assert len(page.encode()) < 5 * 2**20
    data = embedded_data(page)
    c = cost(graph)
    assert data["totals"]["params"] == c.params
    assert sum(n["cost"]["weight_bytes"] for n in data["nodes"]) == c.weight_bytes


def test_view_refuses_bad_paths_and_keeps_existing_files(tmp_path):
    result = invoke("view", "no-such-model", "-o", tmp_path / "v.html")
    assert result.exit_code == 1 and "zoo model name" in result.output
    assert result.output.count("\n") == 1
    existing = tmp_path / "mine.html"
    existing.write_text("keep")
    result = invoke("view", "llama-2", "--size", "tiny", "-o", existing)
    assert result.exit_code == 1 and "--force" in result.output  # the shared output rule
    assert existing.read_text() == "keep"
    result = invoke("view", "llama-2", "-o", tmp_path)
    assert result.exit_code == 2 and "is a directory" in result.output
    result = invoke("view", "llama-2", "--size", "tiny", "-o", existing, "--force")
    assert result.exit_code == 0, result.output
    assert embedded_data(existing.read_text())["name"] == "llama-2-tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.html"]  # no temp files left
