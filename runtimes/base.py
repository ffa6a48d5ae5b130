"""The session API every runtime implements: `run(feeds)` plus shared LM driving.

session.forward(ids, decode=True)                 # logits [batch, seq, vocab]
session.generate([[1, 2, 3], [4, 5]], 16, temperature=0.8, top_k=40, seed=0, stop_ids=[2])
for tokens in session.stream(prompts, 16): ...    # one [batch] array per step
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from irgraph import kvcache, lm
from irgraph.feeds import check_feeds
from irgraph.runtimes import generate as _generate
from irgraph.types import TensorType


class Session(ABC):
    """A loaded model: named typed inputs, metadata, and one `run` call.

    `forward` (prefill or cached decode) and `generate` are built on `run`
    (through `step`), so every backend drives the KV cache the same way.
    `left_padding` is False for a backend whose attention cannot take
    left-padded batches; `generate` then steps one unpadded batch per length.

    `run` and `step` check every call's feeds (`irgraph.feeds.check_feeds`: names, dtypes,
    shapes, ids and positions within `bounds`, the context) before the backend's `_run` /
    `_step` sees them, so every backend refuses what the interpreter refuses, with an
    InputError. A backend sets `bounds` (`feeds.index_bounds` of its graph, or
    `feeds.bounds_from_manifest`) and `where` (its folder, named in errors).
    """

    inputs: dict[str, TensorType]
    meta: dict[str, Any]
    left_padding: bool = True
    bounds: Mapping[str, int] = MappingProxyType({})  # input name -> exclusive bound of values
    where: str = ""

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for one call with the given inputs (checked first)."""
        self.check(feeds)
        return self._run(feeds)

    def check(self, feeds: Mapping[str, Any]) -> None:
        """InputError for feeds this model refuses (see the class docstring)."""
        check_feeds(self.inputs, feeds, self.bounds, where=self.where)

    @abstractmethod
    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The backend's call, on feeds `check` has accepted."""

    def forward(self, ids: Any, *, decode: bool = False, **kw: Any) -> np.ndarray:
        """Logits [batch, seq, vocab] for ids, in one call or token by token through the cache."""
        kvcache.require_drivable(self.meta, self.where or "the session", self.inputs)
        return lm.forward(self.run, self.inputs, np.asarray(ids), decode=decode, **kw)

    def step(self, feeds: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """One cached call for generation: (logits, the next call's cache), feeds checked first.

        The cache is keyed by past_key_values.* name.
        """
        self.check(feeds)
        return self._step(feeds)

    def _step(self, feeds: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """`step` on checked feeds.

        Backends override this to keep the cache in their own tensors between steps, and
        may return the last position's logits only ([batch, 1, vocab]): generate reads no other.
        """
        out = self._run(feeds)
        return np.asarray(out["logits"]), {
            n: out[lm.present_name(n)] for n in lm.cache_inputs(self.inputs)
        }

    def stream(
        self,
        prompts: Any,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_ids: Sequence[int] = (),
        pad_id: int | None = None,
        domain: int = 0,
    ) -> Iterator[np.ndarray]:
        """Yield each step's new tokens ([batch] int64, -1 for rows that have stopped)."""
        sampling = _generate.Sampling(temperature, top_k, top_p, seed)
        return _generate.stream(
            self,
            prompts,
            max_new_tokens,
            sampling=sampling,
            stop_ids=stop_ids,
            pad_id=pad_id,
            domain=domain,
        )

    def generate(
        self,
        prompts: Any,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_ids: Sequence[int] = (),
        pad_id: int | None = None,
        callback: Callable[[int, np.ndarray], None] | None = None,
        domain: int = 0,
    ) -> list[list[int]]:
        """New tokens per prompt: greedy by default, else sampled (temperature, top-k/p, seed);
        `domain`: the rows' domain id where the model routes by domain (PanGu-Σ)."""
        sampling = _generate.Sampling(temperature, top_k, top_p, seed)
        return _generate.generate(
            self,
            prompts,
            max_new_tokens,
            sampling=sampling,
            stop_ids=stop_ids,
            pad_id=pad_id,
            callback=callback,
            domain=domain,
        )
