"""What a pass may use besides the graph: calibration data, a seed, progress, and providers.

    ctx = PassContext(calibration=load_calibration("calib/"), seed=1, progress=bar)
    run_pipeline(graph, "...", ctx=ctx)

Data-dependent passes (quantization, pruning by importance) need token batches
and sometimes gradients. Passes never import torch, onnx or tvm: the caller
(the CLI) hands in providers that do, and a pass asks for one with
`ctx.need_gradients(self)`, which names the pass and the missing provider when
none was given. Library code never prints: passes report through `progress`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from irgraph.errors import PassError
from irgraph.ir import Graph
from irgraph.progress import Progress, no_progress


class GradientProvider(Protocol):
    """Gradients of the language-model loss on `batches` with respect to the graph's weights."""

    def gradients(self, graph: Graph, batches: Sequence[np.ndarray]) -> Mapping[str, np.ndarray]:
        """{param name: gradient array shaped like the weight} (mean over the batches)."""
        ...


def no_log(message: str) -> None:
    """The default log callback: say nothing."""


@dataclass(frozen=True)
class PassContext:
    """Inputs a pass may need that are not in the graph; every field has a harmless default.

    calibration: batches of token ids, int64 [batch, seq] each (windows of real text).
    seed: for any random choice a pass makes, and for the --check inputs.
    progress: `progress(done, total, what)`, called by long passes as they go.
    log: `log(message)`, for warnings a user should see (the CLI prints them to stderr).
    gradients: a GradientProvider, filled by the CLI from the torch backend.
    """

    calibration: Sequence[np.ndarray] = ()
    seed: int = 0
    progress: Progress = field(default=no_progress, compare=False)
    log: Callable[[str], None] = field(default=no_log, compare=False)
    gradients: GradientProvider | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        batches = tuple(self.calibration)
        for i, batch in enumerate(batches):
            if not (isinstance(batch, np.ndarray) and batch.dtype == np.int64 and batch.ndim == 2):
                got = (
                    f"{batch.dtype}{list(batch.shape)}"
                    if isinstance(batch, np.ndarray)
                    else type(batch).__name__
                )
                raise PassError(
                    f"calibration batch {i} is not a batch of token ids",
                    expected="int64 array [batch, seq]",
                    got=got,
                )
        object.__setattr__(self, "calibration", batches)

    def need_calibration(self, p: Any) -> tuple[np.ndarray, ...]:
        """The calibration batches, or a PassError naming pass `p` when there are none."""
        if not self.calibration:
            raise PassError(
                f"pass {p.name} needs calibration data (--calibration PATH on the command line)",
                expected="--calibration PATH, or PassContext(calibration=[int64 [batch, seq] ...])",
                got="no batches",
            )
        return tuple(self.calibration)

    def need_gradients(self, p: Any) -> GradientProvider:
        """The gradient provider, or a PassError naming pass `p` and the missing provider."""
        return self._provider(p, "gradients")

    def _provider(self, p: Any, name: str) -> Any:
        provider = getattr(self, name)
        if provider is None:
            raise PassError(
                f"pass {p.name} needs the {name!r} provider, and none was given",
                expected=f"PassContext({name}=...) (the CLI fills it from the torch backend)",
                got="None",
            )
        return provider


def load_calibration(folder: str | Path) -> list[np.ndarray]:
    """Calibration batches from `folder`: every `*.npy` file, in name order, one batch each.

    A file holds integer token ids [batch, seq] (or [seq], read as one row); the
    ids are returned as int64.
    """
    root = Path(folder)
    files = sorted(root.glob("*.npy")) if root.is_dir() else []
    if not files:
        raise PassError(
            "no calibration batches found",
            expected="a folder of *.npy files of token ids [batch, seq]",
            got=str(root),
        )
    batches = []
    for path in files:
        ids = np.load(path, allow_pickle=False)
        if ids.ndim == 1:
            ids = ids[None]
        if not np.issubdtype(ids.dtype, np.integer) or ids.ndim != 2:
            raise PassError(
                "a calibration file does not hold token ids",
                expected="integer array [batch, seq]",
                got=f"{ids.dtype}{list(ids.shape)}",
                where=str(path),
            )
        batches.append(ids.astype(np.int64))
    return batches
