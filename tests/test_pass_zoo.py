"""Fusion passes on the zoo's tiny twins and on imported Hugging Face checkpoints.

Per block, fuse-parallel-attention must leave exactly two matmuls on a shared-norm
parallel block (the fused input projection and the merged output projection), be
exact (prefill and cached decode), and merge nothing across GPT-NeoX's two norms.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

import irgraph.model_zoo as zoo_pkg
from irgraph.ir import Graph
from irgraph.passes import check_equivalent, run_pipeline


def matmuls_per_layer(g: Graph) -> Counter:
    count: Counter = Counter()
    for n in g.nodes:
        if n.op in ("linear", "matmul") and n.inputs[1] is not None and n.inputs[1].param:
            m = re.search(r"(?:^|\.)layers\.(\d+)\.", n.inputs[1].param)
            if m:
                count[int(m.group(1))] += 1
    return count


def fused(g: Graph, pipeline: str) -> Graph:
    out = run_pipeline(g, pipeline, check=True).graph
    assert check_equivalent(g, out, seed=1) <= 1e-5
    return out


def zoo(name: str) -> Graph:
    return zoo_pkg.build(name, size="tiny", seed=0)


@pytest.mark.parametrize("name", ["palm", "u-palm", "codegen"])
def test_shared_norm_parallel_blocks_fuse_to_two_matmuls(name):
    g = zoo(name)
    before = matmuls_per_layer(g)
    assert before and all(n >= 4 for n in before.values())
    out = fused(g, "fuse-parallel-attention")
    assert matmuls_per_layer(out) == {layer: 2 for layer in before}


def test_gpt_neox_merges_only_the_residual_projections():
    g = zoo("gpt-neox-20b")
    norms = {n.outputs[0] for n in g.nodes if n.op in ("layer_norm", "rms_norm")}
    reading_norms = sorted(
        n.inputs[1].param for n in g.nodes if n.op == "linear" and n.inputs[0] in norms
    )
    out = fused(g, "fuse-parallel-attention")
    norms_after = {n.outputs[0] for n in out.nodes if n.op in ("layer_norm", "rms_norm")}
    assert (
        sorted(
            n.inputs[1].param for n in out.nodes if n.op == "linear" and n.inputs[0] in norms_after
        )
        == reading_norms
    )  # untouched
    assert not any("in_proj" in p for p in out.params)
    assert matmuls_per_layer(out) == {layer: n - 1 for layer, n in matmuls_per_layer(g).items()}


def test_llama_2_fuse_qkv_and_gate_up():
    g = zoo("llama-2")
    before = matmuls_per_layer(g)
    out = fused(g, "fuse-qkv,fuse-gate-up")
    assert matmuls_per_layer(out) == {
        layer: n - 3 for layer, n in before.items()
    }  # q,k,v -> 1; gate,up -> 1
    assert not run_pipeline(g, "fuse-parallel-attention").modified  # sequential blocks


@pytest.mark.parametrize(
    "case, pipeline, expected",
    [
        ("falcon-7b", "fuse-parallel-attention", 2),  # one shared norm, multi-query
        ("gptj", "fuse-parallel-attention", 2),
        ("codegen", "fuse-parallel-attention", 2),
        # falcon-40b (new_decoder_architecture) normalises attention and MLP inputs separately:
        # q/k/v fuse among themselves, the MLP input stays, the output projections merge
        ("falcon-40b", "fuse-parallel-attention", 5),
        ("falcon-40b", "fuse-qkv,fuse-parallel-attention", 3),
    ],
)
def test_imported_checkpoints(tmp_path, case, pipeline, expected):
    from irgraph.model_zoo.hf_import import import_hf
    from tests.helpers.hf_tiny import make_model, save_model

    g = import_hf(save_model(make_model(case), tmp_path / case))
    out = fused(g, pipeline)
    assert set(matmuls_per_layer(out).values()) == {expected}


CLEANUP_AND_FUSION = (
    "canonicalize,cse,fuse-qkv,fuse-gate-up,fuse-parallel-attention,constant-fold,dce"
)


@pytest.mark.parametrize("name", zoo_pkg.names())
def test_every_zoo_model_survives_the_exact_pipeline(name):
    g = zoo(name)
    result = run_pipeline(
        g, CLEANUP_AND_FUSION, check=True
    )  # every exact pass checked: prefill and decode
    linears = [sum(n.op == "linear" for n in x.nodes) for x in (g, result.graph)]
    assert linears[1] <= linears[0]
