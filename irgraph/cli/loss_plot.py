"""`irgraph train`'s loss curve: DIR/loss.png, when matplotlib (`irgraph[plot]`) is installed.

The training loss of every step this run made and the held-out loss of every
evaluation, against the step. Without matplotlib nothing is drawn and nothing
else changes. The figure is drawn with matplotlib's object API (no pyplot, no
global backend), and written atomically with the user's umask.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from irgraph.atomic import atomic_file

LOSS_PNG = "loss.png"


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_loss_curve(
    out_dir: str | os.PathLike[str],
    steps: Sequence[tuple[int, float]],
    evals: Sequence[tuple[int, float]],
    title: str,
) -> Path | None:
    """Draw (step, loss) pairs into out_dir/loss.png; None when matplotlib is missing."""
    if not have_matplotlib() or not (steps or evals):
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    if steps:
        ax.plot(*zip(*steps), lw=1, color="#4575b4", label="training loss")
    if evals:
        ax.plot(*zip(*evals), "o-", color="#d73027", label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path = Path(out_dir) / LOSS_PNG
    with atomic_file(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
