"""Every op case (tests/helpers/op_cases.py) through every implementation, against the interpreter.

Columns: an independent PyTorch reference (where the table has one), the torch backend, ONNX
in both flavours (`ort` contrib ops and `portable` standard ops) and TVM on the host CPU. Each
case is a one-node graph built through the backends' public APIs. TVM compiles all cases as
one graph of independent nodes (one build instead of ~90), then each case checks its own
outputs. Tolerance: fp32, 1e-5.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

import irgraph
from irgraph import DType, GraphBuilder
from irgraph.codegen.onnx import FLAVOURS, build_model
from irgraph.codegen.torch import to_torch, torch_feeds
from irgraph.codegen.tvm import compile_graph as tvm_compile
from irgraph.errors import CodegenError
from irgraph.registry import OPS
from irgraph.runtimes.tvm import TVMSession
from tests.helpers.op_cases import CASES, OpCase, add_case, one_node_graph

TOL = {"rtol": 1e-5, "atol": 1e-5}
IDS = [c.id for c in CASES]
# (column, case id) -> why a backend differs from the reference there; each is a finding.
KNOWN_GAPS = {
    ("torch", "gather-negative"): "torch lowering: index_select rejects negative indices "
    "(the reference is np.take, which counts them from the end)",
}
# (column, case id) -> the CodegenError a backend refuses the case with, by design (none now:
# TVM lowers the float8 KV cache too).
REFUSED: dict[tuple[str, str], str] = {}
# (column, case id) -> (tolerance, why): documented backend policies, not bugs.
LOOSER = {
    ("onnx", "cast-bf16"): (
        {"rtol": 2**-8, "atol": 1e-5},
        "ONNX computes every float in the artifact's compute dtype (f32), so a cast to bf16 "
        "keeps full precision instead of rounding to 8 mantissa bits",
    ),
}


def _cases(column: str) -> list:
    """CASES as pytest params, a known gap as a strict xfail (it must keep failing until fixed)."""
    return [
        pytest.param(
            c,
            id=c.id,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[column, c.id])]
            if (column, c.id) in KNOWN_GAPS
            else [],
        )
        for c in CASES
    ]


def _numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach()
        low = (torch.bfloat16, torch.float8_e4m3fn)  # numpy has neither: compare as f32
        return a.float().numpy() if a.dtype in low else a.numpy()
    a = np.asarray(a)
    low = str(a.dtype) in ("bfloat16", "float8_e4m3fn")
    return a.astype(np.float32) if a.dtype.kind == "V" or low else a


def _check(got: dict, want: dict, case: OpCase, column: str) -> None:
    assert sorted(got) == sorted(want), (column, case.id)
    tol = LOOSER.get((column.split("-")[0], case.id), (TOL, ""))[0]
    for name, ref in want.items():
        g, r = _numpy(got[name]), _numpy(ref)
        assert g.shape == r.shape, f"{column} {case.id} {name}: {g.shape} vs {r.shape}"
        if r.dtype.kind in "iub":
            np.testing.assert_array_equal(g, r, err_msg=f"{column} {case.id} {name}")
        else:
            np.testing.assert_allclose(g, r, **tol, err_msg=f"{column} {case.id} {name}")


def _reference(case: OpCase) -> tuple[irgraph.Graph, dict, dict]:
    graph, feeds = one_node_graph(case)
    return graph, feeds, irgraph.run(graph, feeds)


def test_table_covers_every_registered_op():
    assert sorted({c.op for c in CASES}) == sorted(OPS)
    assert len(IDS) == len(set(IDS)), "case ids are unique"
    assert {cid for _, cid in KNOWN_GAPS | LOOSER | REFUSED} <= set(IDS)


def test_import_irgraph_registers_every_op():
    # A fresh interpreter: OPS is complete after the package import, with no get_op warm-up.
    code = "import irgraph.registry as r; print(len(r.OPS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(OPS) >= 48


@pytest.mark.parametrize("case", [c for c in CASES if c.torch_ref], ids=lambda c: c.id)
def test_interpreter_matches_torch_reference(case):
    _, _, want = _reference(case)
    args = [None if a is None else torch.from_numpy(np.asarray(a)) for a in case.arrays()]
    got = case.torch_ref(*args, **case.attrs)
    got = got if isinstance(got, tuple) else (got,)
    _check({f"out{i}": t for i, t in enumerate(got)}, want, case, "torch reference")


@pytest.mark.parametrize("case", _cases("torch"))
def test_torch_backend(case):
    graph, feeds, want = _reference(case)
    got = to_torch(graph)(**torch_feeds(feeds))
    _check(got, want, case, "torch")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", _cases("onnx"))
def test_onnx(case, flavour):
    graph, feeds, want = _reference(case)
    model, _ = build_model(graph, flavour)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, feeds)))
    for name, v in graph.outputs.items():  # ORT hands float8 back as its bytes
        if v.type.dtype == DType.f8e4m3:
            got[name] = got[name].view(DType.f8e4m3.numpy)
    _check(got, want, case, f"onnx-{flavour}")


@pytest.fixture(scope="module")
def tvm_outputs(tmp_path_factory):
    """All cases as one graph of independent nodes, compiled once for tvm-llvm and run once."""
    b = GraphBuilder("op-matrix")
    feeds, weights, names = {}, {}, {}
    for i, case in enumerate(CASES):
        if ("tvm", case.id) in REFUSED:
            continue
        f, w, outs = add_case(b, case, prefix=f"c{i}_")
        feeds.update(f)
        weights.update(w)
        names[case.id] = outs
    session = TVMSession(tvm_compile(b.build(weights), tmp_path_factory.mktemp("tvm") / "ops"))
    got = session.run(feeds)
    return {cid: {n.split("_", 1)[1]: got[n] for n in outs} for cid, outs in names.items()}


@pytest.mark.parametrize("case", _cases("tvm"))
def test_tvm_llvm(case, tvm_outputs, tmp_path):
    if ("tvm", case.id) in REFUSED:
        graph, _ = one_node_graph(case)
        with pytest.raises(CodegenError, match=REFUSED["tvm", case.id]):
            tvm_compile(graph, tmp_path / "refused")
        return
    _, _, want = _reference(case)
    _check(tvm_outputs[case.id], want, case, "tvm-llvm")
