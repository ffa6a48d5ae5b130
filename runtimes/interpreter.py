"""The reference interpreter as a runtime, for saved graph folders."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from irgraph.feeds import index_bounds
from irgraph.finite import check_finite
from irgraph.interpreter import run
from irgraph.ir import Graph
from irgraph.lm import graph_inputs
from irgraph.runtimes.base import Session
from irgraph.serialize import load_with_weights


class InterpreterSession(Session):
    def __init__(self, graph: Graph):
        self.graph = graph
        self.inputs = graph_inputs(graph)
        self.meta = dict(graph.meta)
        self.bounds = index_bounds(graph)

    @staticmethod
    def open(
        path: Path, *, cast_weights: bool = False, allow_nonfinite: bool = False
    ) -> InterpreterSession:
        """The saved graph at `path`, its weights checked (see `irgraph.runtimes.open`)."""
        graph = load_with_weights(path, cast_weights=cast_weights)
        if not allow_nonfinite:
            check_finite(graph, where=str(path))
        session = InterpreterSession(graph)
        session.where = str(path)
        return session

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run(self.graph, feeds)
