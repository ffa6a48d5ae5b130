"""The torch backend's lowering table: complete, and a missing lowering is a typed error.

Every op's torch lowering against the numpy reference is a column of tests/test_op_matrix.py.
"""

from __future__ import annotations

import pytest

from irgraph import CodegenError
from irgraph.codegen.torch import LOWERINGS, to_torch
from irgraph.registry import OPS
from tests.helpers.op_cases import CASES, one_node_graph


def test_every_registered_op_has_a_torch_lowering():
    assert sorted(OPS) == sorted(LOWERINGS)


def test_missing_lowering_names_op_and_target(monkeypatch):
    graph, _ = one_node_graph(next(c for c in CASES if c.op == "erf"))
    monkeypatch.delitem(LOWERINGS, "erf")
    with pytest.raises(CodegenError, match=r"target torch: no torch lowering for op 'erf'"):
        to_torch(graph)
