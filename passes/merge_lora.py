"""merge-lora: fold trained LoRA adapters into the base weights (W + alpha/rank · B·A).

The adapters come from a safetensors file written by `irgraph train --lora`
(its checkpoints' `model.safetensors`, keys `lora.<weight name>.lora_A` [rank, in]
and `.lora_B` [out, rank]); other tensors in the file are ignored. The merge is
numpy (`merge_lora` below); the training path (codegen/torch/lora.py, `irgraph
train --lora`) calls the same function, so both fold adapters identically.

Kind: approximate. The result is the adapted model, not the base graph the pass
receives, so outputs change by exactly the adapters' effect; --check measures
that difference instead of bounding it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irgraph.errors import ConfigError, PassError
from irgraph.ir import Graph
from irgraph.passes.context import PassContext
from irgraph.passes.manager import APPROXIMATE, Pass, PassResult, option, register_pass
from irgraph.weights import WeightStore

PREFIX, A, B = "lora.", ".lora_A", ".lora_B"


@dataclass(frozen=True)
class LoraWeights:
    a: np.ndarray  # [rank, in]
    b: np.ndarray  # [out, rank]
    scale: float  # alpha / rank


def merge_lora(graph: Graph, adapters: Mapping[str, LoraWeights]) -> Graph:
    """A new Graph with adapted weights W + scale·B·A (fp32, stored in IR dtype); others shared."""
    if graph.weights is None:
        raise ConfigError(f"graph {graph.name!r} has no weights to merge LoRA adapters into")
    arrays = {name: graph.weights[name] for name in graph.stored_names()}  # quantized: as stored
    for name, ad in adapters.items():
        if name not in graph.params:
            raise ConfigError(f"LoRA adapter for unknown weight {name!r}", where="merge_lora")
        w = graph.params[name]
        if not w.type.dtype.is_float:
            raise ConfigError(
                f"LoRA adapter on non-float weight {name!r} (merge before quantizing)",
                got=str(w.type.dtype),
                where="merge_lora",
            )
        out_f, in_f = w.type.shape
        if ad.a.shape[1:] != (in_f,) or ad.b.shape != (out_f, ad.a.shape[0]):
            raise ConfigError(
                f"LoRA adapter shapes do not fit {name!r} [{out_f}, {in_f}]",
                got=f"A {list(ad.a.shape)}, B {list(ad.b.shape)}",
                where="merge_lora",
            )
        merged = np.asarray(arrays[name], np.float32) + np.float32(ad.scale) * (
            ad.b.astype(np.float32) @ ad.a.astype(np.float32)
        )
        arrays[name] = merged.astype(w.type.dtype.numpy)
    return Graph(
        name=graph.name,
        inputs=dict(graph.inputs),
        params=dict(graph.params),
        nodes=list(graph.nodes),
        outputs=dict(graph.outputs),
        meta=dict(graph.meta),
        weights=WeightStore.from_arrays(arrays),
    )


@register_pass
@dataclass(frozen=True)
class MergeLora(Pass):
    name = "merge-lora"
    kind = APPROXIMATE
    summary = "fold LoRA adapters (a safetensors file from irgraph train --lora) into the weights"
    adapters: str = option("", doc="safetensors file (or checkpoint folder) of the adapters")
    alpha: float = option(16.0, min=0.0, doc="LoRA scale numerator: W += alpha/rank · B·A")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        path = Path(self.adapters)
        if path.is_dir():
            path = path / "model.safetensors"
        if not self.adapters or not path.is_file():
            raise PassError(
                "merge-lora needs adapters=FILE (a safetensors file with lora.*.lora_A/B tensors)",
                got=repr(self.adapters),
                where="option adapters",
            )
        store = WeightStore.open(path)
        names = sorted(
            {k[len(PREFIX) : -len(A)] for k in store if k.startswith(PREFIX) and k.endswith(A)}
        )
        if not names:
            raise PassError(
                "no LoRA adapters in the file",
                expected=f"{PREFIX}<weight>{A} tensors",
                where=str(path),
            )
        adapters = {}
        for name in names:
            if f"{PREFIX}{name}{B}" not in store:
                raise PassError(f"adapter {name!r} has lora_A but no lora_B", where=str(path))
            a = np.asarray(store[f"{PREFIX}{name}{A}"], np.float32)
            adapters[name] = LoraWeights(
                a, np.asarray(store[f"{PREFIX}{name}{B}"], np.float32), self.alpha / a.shape[0]
            )
        return PassResult(merge_lora(graph, adapters), True, f"merged {len(adapters)} adapters")
