"""Checkpoint tensors -> irgraph parameters, lazily: a mapped tensor is computed on first use.

`assemble` turns the role assignment (roles.py) into one `Source` per irgraph
parameter: the checkpoint tensor itself (memory-mapped, untouched), a view of
it (a fused-QKV split, OPT's position rows) or a copy made on access (stacked
experts). `MappedWeights` serves them to the graph; saving writes each once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from irgraph.errors import ConfigError
from irgraph.model_zoo.hf_import.layouts import split_gate_up, split_qkv, stack_experts
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.weights import WeightStore

_EXPERT = re.compile(r"layers\.(\d+)\.moe\.experts\.(\d+)\.(gate|up|down)\.weight")
_QKV = re.compile(r"(layers\.\d+\.attn)\.qkv\.(weight|bias)")


def expert_param(layer: int | str, kind: str) -> str:
    """The irgraph name of a stacked expert tensor (zoo contract: no `.weight` suffix)."""
    return f"layers.{layer}.moe.experts.{kind}"


@dataclass(frozen=True)
class Source:
    """How to produce one parameter: its shape and dtype up front, the data on demand."""

    shape: tuple[int, ...]
    dtype: np.dtype
    load: Callable[[], np.ndarray]
    origin: str  # checkpoint tensor(s) it comes from, for messages


class MappedWeights(WeightStore):
    """irgraph parameter name -> array, computed on each access and not kept.

    Splits and slices are views of the memory-mapped checkpoint (free); only
    stacked experts copy, and saving (`save_safetensors` fetches one tensor at
    a time) then never holds more than one of them.
    """

    def __init__(self, sources: dict[str, Source]):
        super().__init__()
        self.sources = sources

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.sources:
            raise KeyError(name)
        return self.sources[name].load()

    def __iter__(self) -> Iterator[str]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __contains__(self, name: object) -> bool:
        return name in self.sources

    def shape_dtype(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        s = self.sources[name]
        return s.shape, s.dtype


def assemble(
    plan: Plan, roles: dict[str, str], store: WeightStore, where: str = ""
) -> dict[str, Source]:
    """One Source per irgraph parameter from `roles` (role name -> checkpoint tensor name)."""
    cfg = plan.config
    sources: dict[str, Source] = {}
    experts: dict[tuple[str, str], dict[int, str]] = {}

    def direct(name: str) -> Source:
        shape, dtype = store.shape_dtype(name)
        return Source(tuple(shape), np.dtype(dtype), lambda: store[name], name)

    for role, name in roles.items():
        if m := _EXPERT.fullmatch(role):
            experts.setdefault((m[1], m[3]), {})[int(m[2])] = name
        elif m := _QKV.fullmatch(role):
            packing = plan.qkv_packing
            if packing is None:
                raise ConfigError(
                    f"fused QKV tensor {name!r} in a model with separate projections", where=where
                )
            shape, dtype = store.shape_dtype(name)
            for j, part in enumerate("qkv"):
                rows = (cfg.heads if part == "q" else cfg.n_kv_heads) * cfg.dim_per_head

                def load(name: str = name, j: int = j, packing: str = packing) -> np.ndarray:
                    return split_qkv(
                        packing,
                        store[name],
                        cfg.heads,
                        cfg.n_kv_heads,
                        cfg.dim_per_head,
                        where=f"{where}: {name}",
                    )[j]

                sources[f"{m[1]}.{part}.{m[2]}"] = Source(
                    (rows, *shape[1:]), np.dtype(dtype), load, name
                )
        elif role.endswith("moe.experts.gate_up"):
            (e, two_f, h), dtype = store.shape_dtype(name)
            layer = role.split(".")[1]
            for j, kind in enumerate(("gate", "up")):

                def half(name: str = name, j: int = j) -> np.ndarray:
                    return split_gate_up(store[name])[j]

                sources[expert_param(layer, kind)] = Source(
                    (e, two_f // 2, h), np.dtype(dtype), half, name
                )
        elif role.endswith("moe.experts.down"):
            sources[expert_param(role.split(".")[1], "down")] = direct(name)
        elif role == "embed_positions.weight" and plan.position_offset:
            (rows, dim), dtype = store.shape_dtype(name)
            off = plan.position_offset

            def rows_after(name: str = name, off: int = off) -> np.ndarray:
                return store[name][off:]

            sources[role] = Source((rows - off, dim), np.dtype(dtype), rows_after, name)
        else:
            sources[role] = direct(name)

    for (layer, kind), by_index in sorted(experts.items()):
        count = len(by_index)
        if sorted(by_index) != list(range(count)):
            raise ConfigError(
                f"layer {layer}: expert {kind} tensors are not numbered 0..{count - 1}",
                got=sorted(by_index),
                where=where,
            )
        names = [by_index[e] for e in range(count)]
        shapes = {store.shape_dtype(n) for n in names}
        if len(shapes) != 1:
            raise ConfigError(
                f"layer {layer}: experts' {kind} matrices differ in shape or dtype", where=where
            )
        ((shape, dtype),) = shapes

        def stacked(names: list[str] = names) -> np.ndarray:
            return stack_experts([store[n] for n in names])

        sources[expert_param(layer, kind)] = Source(
            (count, *shape), np.dtype(dtype), stacked, f"{names[0]} .. {names[-1]}"
        )
    return sources
