"""The surveyed architectures, declared as data (imported as `irgraph.model_zoo`).

    from irgraph import model_zoo
    model_zoo.names()                                  # the 43 models
    entry = model_zoo.get("palm")                      # published dims, sources, survey row
    g = model_zoo.build("palm")                        # the tiny twin, seeded random weights
    big = model_zoo.build("palm", size="published")    # structure only: nothing allocated

Entries live in `entries/` (data), the one parametric builder in `builder/`,
tiny twins are derived in `tiny.py`, Hugging Face import in `hf_import/`.
"""

from __future__ import annotations

from typing import Literal

from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.model_zoo.builder import build_graph
from irgraph.model_zoo.catalog import get, names
from irgraph.model_zoo.config import ModelConfig, ZooEntry
from irgraph.model_zoo.tiny import tiny_config

Size = Literal["tiny", "published"]
SIZES = ("tiny", "published")


def config(name: str, size: Size = "published") -> ModelConfig:
    """The published architecture, or its tiny twin."""
    if size not in SIZES:
        raise ConfigError("unknown size", expected=" | ".join(SIZES), got=size)
    entry = get(name)
    return entry.config if size == "published" else tiny_config(entry.config, entry.tiny_overrides)


def build(name: str, size: Size = "tiny", seed: int = 0, weights: bool = True) -> Graph:
    """The graph of a zoo model. Published size is always structure only (weights not allocated)."""
    cfg = config(name, size)
    return build_graph(cfg, weights="random" if weights and size == "tiny" else None, seed=seed)


__all__ = [
    "ModelConfig",
    "SIZES",
    "Size",
    "ZooEntry",
    "build",
    "build_graph",
    "config",
    "get",
    "names",
    "tiny_config",
]
