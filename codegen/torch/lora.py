"""LoRA (Hu et al. 2021): low-rank adapters on chosen linear weights, and their exact merge.

An adapted weight is W + (alpha/rank)·B·A with A [rank, in] and B [out, rank];
B starts at zero, so training starts from the base model. The base stays
frozen. `attach` wires adapters into a `GraphModule` (the effective weight is
formed where the IR reads the parameter, so every op sees it); the merge that
folds them into the base weights is numpy (`irgraph.passes.merge_lora`), so a
compiled artifact carries no adapter overhead.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from irgraph.codegen.torch.module import GraphModule
from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.passes.merge_lora import LoraWeights
from irgraph.types import Dim

ROOT = "lora"  # the adapters' submodule: state_dict keys are lora.<weight name>.lora_A / .lora_B


def linear_weights(graph: Graph) -> list[str]:
    """Parameters used as a `linear` weight.

    Except those of projections that are graph outputs (the LM head).
    """
    outputs = set(graph.outputs.values())
    found: list[str] = []
    for node in graph.nodes:
        w = node.inputs[1] if node.op == "linear" else None
        if w is not None and w.param and node.outputs[0] not in outputs and w.param not in found:
            found.append(w.param)
    return found


def choose_targets(graph: Graph, patterns: Sequence[str] = ()) -> list[str]:
    """Linear weights matching any glob in `patterns` (all of them when none).

    ConfigError on a pattern that matches none.
    """
    names = linear_weights(graph)
    if not patterns:
        return names
    for pat in patterns:
        if not fnmatch.filter(names, pat):
            raise ConfigError(
                f"LoRA target {pat!r} matches no linear weight",
                expected=", ".join(names[:8]) + " ...",
                where="--lora-targets",
            )
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


class LoraAdapters(nn.Module):
    """A and B for each target weight, in a module tree keyed by the weight's dotted name."""

    def __init__(
        self, shapes: Mapping[str, tuple[int, int]], rank: int, alpha: float, seed: int = 0
    ):
        super().__init__()
        if rank < 1:
            raise ConfigError("LoRA rank must be at least 1", got=rank, where="--lora")
        self.rank, self.scale = rank, alpha / rank
        gen = torch.Generator().manual_seed(seed)
        self.names = list(shapes)
        for name, (out_f, in_f) in shapes.items():
            owner: nn.Module = self
            for part in name.split("."):
                owner = owner._modules.get(part) or _child(owner, part)
            bound = 1 / math.sqrt(in_f)  # kaiming-uniform(a=√5) as nn.Linear and PEFT initialise A
            owner.register_parameter(
                "lora_A",
                nn.Parameter(torch.empty(rank, in_f).uniform_(-bound, bound, generator=gen)),
            )
            owner.register_parameter("lora_B", nn.Parameter(torch.zeros(out_f, rank)))

    def pair(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get_parameter(f"{name}.lora_A"), self.get_parameter(f"{name}.lora_B")

    def effective(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """The weight the graph sees: W + scale·B·A for adapted weights, W otherwise."""
        if name not in self.names:
            return weight
        a, b = self.pair(name)
        return weight + self.scale * (b @ a)

    def weights(self) -> dict[str, LoraWeights]:
        return {
            n: LoraWeights(a.detach().cpu().numpy(), b.detach().cpu().numpy(), self.scale)
            for n in self.names
            for a, b in [self.pair(n)]
        }


def _matrix_shape(name: str, shape: tuple[Dim, ...]) -> tuple[int, int]:
    """A linear weight's static [out, in] shape (adapters are sized by it)."""
    if len(shape) == 2:
        out_f, in_f = shape
        if isinstance(out_f, int) and isinstance(in_f, int):
            return out_f, in_f
    raise ConfigError(
        f"LoRA target {name!r} is not a static matrix",
        expected="[out, in] ints",
        got=str(shape),
        where="--lora",
    )


def _child(owner: nn.Module, part: str) -> nn.Module:
    child = nn.Module()
    owner.add_module(part, child)
    return child


def attach(
    module: GraphModule,
    graph: Graph,
    rank: int,
    alpha: float = 16.0,
    targets: Sequence[str] = (),
    seed: int = 0,
) -> LoraAdapters:
    """Freeze `module`'s weights and add trainable adapters on the chosen linear weights."""
    if any(name == ROOT or name.startswith(ROOT + ".") for name in graph.params):
        raise ConfigError(
            f"the graph has a weight under {ROOT!r}, where LoRA adapters live", where="--lora"
        )
    names = choose_targets(graph, targets)
    adapters = LoraAdapters(
        {n: _matrix_shape(n, graph.params[n].type.shape) for n in names}, rank, alpha, seed
    )
    for p in module.parameters():
        p.requires_grad_(False)
    module.add_module(ROOT, adapters)
    module.weight_hook = adapters.effective
    return adapters
