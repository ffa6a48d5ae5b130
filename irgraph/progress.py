"""How long-running library code reports progress: a callback, never a print.

    def lower(graph, progress: Progress = no_progress):
        for i, node in enumerate(graph.nodes):
            progress(i, len(graph.nodes), "lowering")
        progress(len(graph.nodes), len(graph.nodes), "lowering")

`progress(done, total, what)`: `done` of `total` units of the step named `what` are
finished. A step reports (0, total) when it starts and (total, total) when it ends, so
that a long single unit (a TVM build) is seen starting. Drawing belongs to the caller:
the command line draws one bar on a terminal (`irgraph/cli/progress.py`).
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]  # progress(done, total, what)


def no_progress(done: int, total: int, what: str = "") -> None:
    """The default progress callback: report nothing."""
