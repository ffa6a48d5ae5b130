"""The session API every runtime implements: `run(feeds)` plus shared LM driving."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from irgraph import lm
from irgraph.types import TensorType


class Session(ABC):
    """A loaded model: named typed inputs, metadata, and one `run` call.

    `forward` (prefill or cached decode) is built on `run`, so every backend
    drives the KV cache the same way.
    """

    inputs: dict[str, TensorType]
    meta: dict[str, Any]

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for one call with the given inputs."""

    def forward(self, ids: Any, *, decode: bool = False, **kw: Any) -> np.ndarray:
        """Logits [batch, seq, vocab] for ids, in one call or token by token through the KV cache."""
        return lm.forward(self.run, self.inputs, np.asarray(ids), decode=decode, **kw)
