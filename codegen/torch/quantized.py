"""A quantized weight in torch: its stored parts as buffers, dequantized on every forward.

`QuantizedWeight` sits in the module tree where a float weight would (`layers.0.q.weight`),
holding the weight-store arrays as buffers `q` (packed nibbles or int8), `scales` and, when
asymmetric, `zero_points`; calling it computes the float32 weight exactly as
`irgraph.quant.dequantize` does. Buffers are not trained: training a quantized graph updates
only its float weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from irgraph.dtypes import DType
from irgraph.quant import SCALES, ZEROS, QuantSpec


class QuantizedWeight(nn.Module):
    q: torch.Tensor
    scales: torch.Tensor
    zero_points: torch.Tensor | None

    def __init__(self, spec: QuantSpec, shape: tuple[int, ...], stored: dict[str, np.ndarray]):
        super().__init__()
        self.spec, self.shape = spec, shape
        self.register_buffer("q", torch.from_numpy(np.array(stored[""], copy=True)))
        self.register_buffer("scales", torch.from_numpy(np.array(stored[SCALES], copy=True)))
        zeros = None if spec.sym else torch.from_numpy(np.array(stored[ZEROS], copy=True))
        self.register_buffer("zero_points", zeros)

    def forward(self) -> torch.Tensor:
        """The float32 weight: (q - z) * scale per group along the last axis, padding dropped."""
        *lead, k = self.shape
        g, nb = self.spec.group_size(k), self.spec.blocks(k)
        q = self.q
        if self.spec.storage is DType.i4:  # two signed nibbles per byte, low first
            pairs = torch.stack([q & 0x0F, q >> 4], dim=-1).to(torch.int16)
            q = torch.where(pairs >= 8, pairs - 16, pairs).reshape(*lead, -1)
        w = q[..., : nb * g].to(torch.float32).reshape(*lead, nb, g)
        if self.zero_points is not None:
            w = w - self.zero_points.to(torch.float32)[..., None]
        w = w * self.scales.to(torch.float32)[..., None]
        return w.reshape(*lead, nb * g)[..., :k]
