"""BuildContext: a GraphBuilder plus the config, parameter bookkeeping and seeded init.

Parameters are declared with their init scale; weights are drawn only at the
end and only when asked for, so a published-size graph (hundreds of billions
of parameters) costs nothing but its node list. Each weight is drawn from a
generator seeded by (seed, crc32(name)): the same name always gets the same
values, whatever else the graph contains.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from irgraph.builder import GraphBuilder
from irgraph.errors import IRError
from irgraph.ir import Graph, Value
from irgraph.model_zoo.config import Activation, ModelConfig, Norm


@dataclass(frozen=True)
class Init:
    shape: tuple[int, ...]
    std: float
    mean: float = 0.0
    group: int = 0  # > 0: an i64 routing table, row d drawn uniformly from [d·group, (d+1)·group)


def feature_width(x: Value) -> int:
    """The feature width (last dim) of a hidden state: always a number in the graphs built here,
    where only batch and sequence dims are symbolic."""
    last = x.type.shape[-1]
    if not isinstance(last, int):
        raise IRError("a hidden state's last dim is symbolic", expected="an int", got=last)
    return last


class BuildContext:
    def __init__(self, config: ModelConfig, meta: dict[str, object]):
        self.cfg = config
        self.b = GraphBuilder(config.name, meta=meta)
        self.inits: dict[str, Init] = {}

    # -- parameters ---------------------------------------------------------------------------

    def param(self, name: str, shape: tuple[int, ...], std: float, mean: float = 0.0) -> Value:
        self.inits[name] = Init(tuple(int(d) for d in shape), std, mean)
        return self.b.param(name, f"f32[{', '.join(map(str, shape))}]")

    def routing_table(self, name: str, domains: int, vocab: int, group: int) -> Value:
        """A fixed random map i64[domains, vocab] -> expert, each domain among its own `group`."""
        self.inits[name] = Init((domains, vocab), 0.0, group=group)
        return self.b.param(name, f"i64[{domains}, {vocab}]")

    def linear(
        self, x: Value, name: str, out: int, inp: int, bias: bool, hint: str | None = None
    ) -> Value:
        w = self.param(f"{name}.weight", (out, inp), 1 / math.sqrt(inp))
        b = self.param(f"{name}.bias", (out,), 0.02) if bias else None
        return self.b.linear(x, w, b, hint=hint)

    def norm(
        self,
        x: Value,
        name: str,
        width: int | None = None,
        kind: Norm | None = None,
        eps: float | None = None,
    ) -> Value:
        """The config's norm (rms or layer, eps, weight offset, bias) over the last dim."""
        cfg = self.cfg
        width = width or cfg.hidden
        kind = kind or cfg.norm
        eps = cfg.norm_eps if eps is None else eps
        # With a weight offset (Nemotron's layernorm1p) the stored weight is w - offset.
        w = self.param(f"{name}.weight", (width,), 0.1, 1.0 - cfg.norm_weight_offset)
        if kind is Norm.RMS:
            return self.b.rms_norm(x, w, eps=eps, weight_offset=cfg.norm_weight_offset)
        bias = self.param(f"{name}.bias", (width,), 0.02) if cfg.norm_bias else None
        return self.b.layer_norm(x, w, bias, eps=eps, weight_offset=cfg.norm_weight_offset)

    def act(self, x: Value, activation: Activation) -> Value:
        if activation is Activation.GELU_TANH:
            return self.b.gelu(x, approximate="tanh")
        return self.b.op(activation.value, x)

    # -- the end --------------------------------------------------------------------------------

    def finish(self, weights: bool, seed: int) -> Graph:
        arrays = None
        if weights:
            arrays = {}
            for name, init in self.inits.items():
                rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
                if init.group:
                    offsets = np.arange(init.shape[0], dtype=np.int64)[:, None] * init.group
                    arrays[name] = offsets + rng.integers(0, init.group, init.shape)
                    continue
                arrays[name] = (init.mean + init.std * rng.standard_normal(init.shape)).astype(
                    np.float32
                )
        return self.b.build(arrays)
