"""The lowering registry every backend shares, and the backend table compile and runtimes read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from irgraph.backends import BACKENDS, backend, backend_for, compile_options, compile_targets
from irgraph.codegen.lowering import LEGALIZE, LoweringTable
from irgraph.errors import CodegenError, ConfigError
from irgraph.parser import parse

GRAPH = """graph "g" {
  input %x: f32[2, 3]
  %a: f32[2, 3] = exp(%x)
  %b: f32[2, 3] = erf(%a)
  %c: f32[2, 3] = add(%b, %a)
  output y = %c
}
"""


def _table() -> LoweringTable[None, str]:
    table: LoweringTable[None, str] = LoweringTable("demo")

    @table.lowers("add", "sub")
    def _binary(ctx: None, node, a: str, b: str) -> list[str]:
        return [f"{node.op}({a}, {b})"]

    return table


def test_register_and_look_up():
    table = _table()
    assert sorted(table) == ["add", "sub"] and len(table) == 2 and "add" in table
    assert table["sub"] is table.get("add")
    assert table.get("mul", None) is None


def test_a_second_registration_is_refused():
    table = _table()
    with pytest.raises(CodegenError, match=r"target demo: op 'add' has two demo lowerings"):
        table.lowers("mul", "add")(lambda ctx, node, a, b: [a])


def test_lookup_names_op_and_target():
    with pytest.raises(CodegenError, match=r"target demo: no demo lowering for op 'exp'"):
        _table()["exp"]
    with pytest.raises(CodegenError, match=r"no demo lowering for op 'exp'"):
        _table().get("exp")


def test_missing_names_every_op_the_target_lacks_at_once():
    graph = parse(GRAPH)
    with pytest.raises(CodegenError) as info:
        _table().missing(graph)
    assert str(info.value) == "target demo: no demo lowering for ops 'erf', 'exp' (graph 'g')"
    with pytest.raises(CodegenError, match=r"^target demo-cpu: no demo lowering"):
        _table().missing(graph, where="target demo-cpu")
    full = _table()
    full.lowers("exp", "erf")(lambda ctx, node, x: [x])
    assert full.missing(graph) is None


def test_every_backend_row_loads_and_its_lowerings_cover_the_same_ops():
    tables = {b.name: b.load("lowerings") for b in BACKENDS}
    assert all(isinstance(t, LoweringTable) and t.target == name for name, t in tables.items())
    # ONNX and TVM lower latent attention through a pass (codegen/lowering.py LEGALIZE)
    legalized = set(LEGALIZE)
    assert set(tables["onnx"]) | legalized == set(tables["tvm"]) | legalized == set(tables["torch"])
    assert not legalized & (set(tables["onnx"]) | set(tables["tvm"]))
    # GGUF's table reads structure (llama.cpp has fixed graph builders): a subset of the ops
    assert set(tables["gguf"]) < set(tables["torch"]) and "linear" in tables["gguf"]
    for b in BACKENDS:
        if b.compile:
            assert callable(b.load("compile")) and b.session and b.reader
            assert isinstance(b.load("session"), type) and callable(b.load("reader"))
        if b.compile:  # every artifact backend names its default pipeline, which parses
            from irgraph.passes.manager import parse_pipeline

            defaults = {o.name: o.default for o in b.options}
            assert parse_pipeline(b.default_pipeline(defaults))


def test_targets_and_options_come_from_the_table():
    assert compile_targets() == ["onnx", "tvm-llvm", "tvm-cuda", "tvm-aarch64", "gguf"]
    assert backend_for("tvm-cuda").name == "tvm" and backend("torch").compile == ""
    assert [o.flag for o in compile_options()] == [
        "--flavour",
        "--dtype",
        "--accuracy-level",
        "--cuda-arch",
        "--activations",
        "--requantize",
    ]
    assert backend_for("gguf").name == "gguf" and backend("gguf").applies("dtype", "gguf")
    with pytest.raises(ConfigError, match="unknown target 'mlc'.*expected onnx \\| tvm-llvm"):
        backend_for("mlc")
    with pytest.raises(ConfigError, match="backend 'torch' has no session"):
        backend("torch").load("session")
    with pytest.raises(ConfigError, match="has no compile option 'flavour'"):
        backend("tvm").option("flavour")


def test_reading_the_table_imports_no_backend():
    """--help and runtimes.open of an ONNX artifact must not pay for importing TVM or torch."""
    code = (
        "import sys, irgraph.backends, irgraph.runtimes, irgraph.cli.compile_cmd\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tvm', 'torch', 'onnx')"
        " or m.startswith('irgraph.codegen')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
