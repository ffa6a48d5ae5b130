"""What a translator hands the importer: the architecture plus the checkpoint's layout quirks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from irgraph.model_zoo.config import ModelConfig


@dataclass(frozen=True)
class Plan:
    """`config` is the model; the other fields say how its checkpoint tensors map onto it."""

    config: ModelConfig
    qkv_packing: str | None = (
        None  # fused QKV layout (layouts.PACKINGS); None when q/k/v are separate
    )
    position_offset: int = 0  # learned position rows to drop (OPT reserves 2 for padding)
    meta: dict[str, Any] = field(default_factory=dict)  # token ids as the checkpoint states them
