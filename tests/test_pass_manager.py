"""The pass manager: pipeline parsing, typed options, errors, verification, checking, timing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from irgraph import PassError
from irgraph.ir import Graph, Node
from irgraph.passes import (
    PASSES,
    Pass,
    PassContext,
    PassResult,
    check_equivalent,
    make_pass,
    parse_pipeline,
    run_pipeline,
)
from irgraph.passes.dce import DeadCodeElimination
from irgraph.passes.fuse_parallel_attention import FuseParallelAttention
from irgraph.weights import WeightStore
from tests.helpers.handbuilt import tiny_llama


def test_pipeline_text_parses_to_typed_passes():
    passes = parse_pipeline(
        " cse , fuse-parallel-attention( merge_outputs = false "
        "),constant-fold(max_elements=0x10),dce"
    )
    assert [p.name for p in passes] == ["cse", "fuse-parallel-attention", "constant-fold", "dce"]
    assert passes[1] == FuseParallelAttention(merge_inputs=True, merge_outputs=False)
    assert passes[2].max_elements == 16
    assert [str(p) for p in passes] == [
        "cse",
        "fuse-parallel-attention(merge_outputs=false)",
        "constant-fold(max_elements=16)",
        "dce",
    ]
    # the printed form parses back to the same passes
    assert parse_pipeline(",".join(map(str, passes))) == passes
    assert parse_pipeline("") == []


def test_pipeline_lists_mix_names_pairs_and_objects():
    passes = parse_pipeline(
        ["cse", ("constant-fold", {"max_elements": 5}), DeadCodeElimination(), "dce,cse"]
    )
    assert [str(p) for p in passes] == ["cse", "constant-fold(max_elements=5)", "dce", "dce", "cse"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("cse,fuse-qvk", "unknown pass 'fuse-qvk'; did you mean 'fuse-qkv'?"),
        ("dce(level=2)", "unknown option 'level' for pass dce (expected no options)"),
        (
            "constant-fold(max_elements=big)",
            "option 'max_elements' of pass constant-fold (expected int, got 'big')",
        ),
        (
            "fuse-parallel-attention(merge_inputs=maybe)",
            "option 'merge_inputs' of pass fuse-parallel-attention",
        ),
        ("cse,,dce", "expected a pass name at column 5"),
        ("constant-fold(max_elements=1", "unclosed option list of pass constant-fold"),
        (
            "constant-fold(max_elements)",
            "option 'max_elements' of pass constant-fold needs a value",
        ),
        ("constant-fold(max_elements=1, max_elements=2)", "given twice"),
        ("cse dce", "expected ',' between passes"),
    ],
)
def test_bad_pipelines_name_what_is_wrong(spec, message):
    with pytest.raises(PassError) as e:
        parse_pipeline(spec)
    assert message in str(e.value)


def test_python_options_are_type_checked():
    with pytest.raises(PassError, match="expected int, got True"):
        make_pass("constant-fold", {"max_elements": True})
    with pytest.raises(PassError, match="expected bool, got 'yes'"):
        parse_pipeline([("fuse-parallel-attention", {"merge_inputs": "yes"})])
    assert make_pass("fuse-parallel-attention", {"merge_inputs": False}).merge_inputs is False


def test_every_pass_declares_a_kind_and_summary():
    assert {cls.kind for cls in PASSES.values()} <= {"exact", "approximate", "arch-change"}
    assert all(cls.summary for cls in PASSES.values())
    assert PASSES["parallelize-blocks"].kind == "arch-change"


def test_arch_change_needs_permission_before_anything_runs():
    g = tiny_llama()
    with pytest.raises(
        PassError, match="pass parallelize-blocks changes the architecture.*allow_arch_change=True"
    ):
        run_pipeline(g, "dce,parallelize-blocks")
    result = run_pipeline(g, "parallelize-blocks", allow_arch_change=True, check=True)
    assert (
        result.records[0].modified and result.records[0].max_error > 1e-3
    )  # measured, not bounded


@dataclass(frozen=True)
class DropLastNode(Pass):
    """A broken pass: removes the node computing the logits (the verifier must catch it)."""

    name = "drop-last-node"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        return PassResult(
            Graph(
                graph.name,
                dict(graph.inputs),
                dict(graph.params),
                graph.nodes[:-1],
                dict(graph.outputs),
                dict(graph.meta),
                graph.weights,
            ),
            True,
        )


@dataclass(frozen=True)
class PerturbWeights(Pass):
    """A wrong 'exact' pass: scales every weight a little (the equivalence check must catch it)."""

    name = "perturb-weights"
    factor: float = 1.001

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        store = WeightStore(
            {n: np.asarray(graph.weight(n)) * np.float32(self.factor) for n in graph.params}
        )
        return PassResult(
            Graph(
                graph.name,
                dict(graph.inputs),
                dict(graph.params),
                list(graph.nodes),
                dict(graph.outputs),
                dict(graph.meta),
                store,
            ),
            True,
        )


@dataclass(frozen=True)
class Crash(Pass):
    name = "crash"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        raise ZeroDivisionError("division by zero")


def test_invalid_graph_names_the_pass_and_those_before():
    with pytest.raises(PassError) as e:
        run_pipeline(tiny_llama(), ["cse", "dce", DropLastNode()])
    text = str(e.value)
    assert text.startswith("pass drop-last-node (after: cse, dce): produced an invalid graph")
    assert "output 'logits' is not produced" in text


def test_crashing_pass_is_named():
    with pytest.raises(
        PassError, match=r"pass crash \(after: none\): crashed with ZeroDivisionError"
    ):
        run_pipeline(tiny_llama(), [Crash()])


def test_check_fails_loudly_on_a_wrong_exact_pass():
    g = tiny_llama()
    run_pipeline(g, [PerturbWeights(1.0)], check=True)  # factor 1: exact
    with pytest.raises(PassError) as e:
        run_pipeline(g, ["cse", PerturbWeights()], check=True)
    assert "pass perturb-weights (after: cse): changed the outputs: output" in str(e.value)
    assert "expected max error <= 1e-05" in str(e.value)
    with pytest.raises(PassError, match="graphs differ"):
        check_equivalent(g, PerturbWeights().apply(g, PassContext()).graph)


def test_check_refuses_structure_only_graphs():
    g = tiny_llama()
    g.weights = None
    with pytest.raises(PassError, match="structure-only"):
        run_pipeline(g, "fuse-qkv", check=True)
    assert run_pipeline(
        g, "fuse-qkv"
    ).modified  # without --check structure-only graphs transform fine


def test_records_timing_and_print_after():
    printed: list[tuple[str, int]] = []
    result = run_pipeline(
        tiny_llama(),
        "fuse-qkv,cse,fuse-gate-up",
        print_after=["fuse-qkv", "fuse-gate-up"],
        on_print=lambda p, g: printed.append((p.name, len(g.nodes))),
    )
    assert [(r.text, r.modified) for r in result.records] == [
        ("fuse-qkv", True),
        ("cse", False),
        ("fuse-gate-up", True),
    ]
    assert all(r.seconds >= 0 and r.verify_seconds >= 0 for r in result.records)
    assert [name for name, _ in printed] == ["fuse-qkv", "fuse-gate-up"]
    table = result.table().splitlines()
    assert table[0].split()[:3] == ["pass", "kind", "ms"] and len(table) == 4
    with pytest.raises(PassError, match="--print-after names passes not in the pipeline: dce"):
        run_pipeline(tiny_llama(), "cse", print_after=["dce"])


def test_passes_do_not_modify_their_input():
    g = tiny_llama()
    text, nodes = str(g), list(g.nodes)
    run_pipeline(g, "fuse-qkv,fuse-gate-up,canonicalize,cse,dce", check=True)
    assert str(g) == text and all(a is b for a, b in zip(g.nodes, nodes))
    assert all(isinstance(n, Node) for n in g.nodes)
