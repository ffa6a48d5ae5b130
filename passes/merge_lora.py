"""merge-lora: fold trained LoRA adapters into the base weights (W + alpha/rank · B·A).

The adapters come from a safetensors file written by `irgraph train --lora`
(its checkpoints' `model.safetensors`, keys `lora.<weight name>.lora_A` [rank, in]
and `.lora_B` [out, rank]); other tensors in the file are ignored. The merge
itself is the training path's `merge_lora` (codegen/torch/lora.py), so the pass
and `irgraph train` fold adapters identically.

Kind: approximate. The result is the adapted model, not the base graph the pass
receives, so outputs change by exactly the adapters' effect; --check measures
that difference instead of bounding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irgraph.errors import PassError
from irgraph.ir import Graph
from irgraph.passes.context import PassContext
from irgraph.passes.manager import APPROXIMATE, Pass, PassResult, option, register_pass
from irgraph.weights import WeightStore

PREFIX, A, B = "lora.", ".lora_A", ".lora_B"


@register_pass
@dataclass(frozen=True)
class MergeLora(Pass):
    name = "merge-lora"
    kind = APPROXIMATE
    summary = "fold LoRA adapters (a safetensors file from irgraph train --lora) into the weights"
    adapters: str = option("", doc="safetensors file (or checkpoint folder) of the adapters")
    alpha: float = option(16.0, min=0.0, doc="LoRA scale numerator: W += alpha/rank · B·A")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        from irgraph.codegen.torch.lora import LoraWeights, merge_lora

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
