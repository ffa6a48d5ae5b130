"""kv_quantize: the new keys or values of one call, as a quantized KV cache stores them.

The pass quantize-kv (passes/quantize_kv.py) puts one before each cached attention's k and v;
kvcache.py names the cache and scale tensors. `x` is the attention's k or v, [batch, seq,
kv_heads, head_dim] (BSNH, straight from the projection); the outputs are in the cache's BNSH
order:

  q      [batch, kv_heads, seq, head_dim] in `dtype`
  scale  f32, by `granularity`:
           per-head     [batch, kv_heads, seq, 1]   max |x| over head_dim / QMAX
           per-token    [batch, 1, seq, 1]          max |x| over heads and head_dim / QMAX
           per-channel  [1, kv_heads, 1, head_dim]  the static `scale` input, passed through
                                                    (calibrated once: a cache that grows token
                                                    by token has no other per-channel scale)

  i8          q = clip(round_half_even(x / scale), -127, 127), QMAX = 127
  f8e4m3      q = float8_e4m3fn(x / scale) (round to nearest even, saturating), QMAX = 448

Dequantized, the cache is cast(q, f32) · scale (the pass spells it with cast and mul, so
every backend that lowers those reads it). A group that is all zeros gets scale FLOOR rather
than 0, so x / scale is defined and dequantizes to zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.registry import Attr, Category, OpDef, expect, register
from irgraph.types import TensorType

GRANULARITIES = ("per-head", "per-token", "per-channel")
QMAX = {"i8": 127.0, "f8e4m3": 448.0}
FLOOR = np.float32(2.0**-24)  # an all-zero group's scale: the least f16 subnormal


def reduce_axes(granularity: str) -> tuple[int, ...]:
    """The BNSH axes one dynamic scale covers."""
    return (3,) if granularity == "per-head" else (1, 3)


@register
class KvQuantize(OpDef):
    """Quantize new keys or values for a quantized cache (see the module docstring)."""

    name = "kv_quantize"
    inputs = ("x", "scale?")
    outputs = ("q", "scale")
    category = Category.ELEMENTWISE
    weights = ("scale",)
    attrs = {
        "dtype": Attr("str", "i8", choices=tuple(QMAX)),
        "granularity": Attr("str", "per-head", choices=GRANULARITIES),
    }

    def infer(
        self, x: TensorType, scale: TensorType | None, dtype: str, granularity: str
    ) -> list[TensorType]:
        expect(x.rank == 4, "kv_quantize x must be [batch, seq, kv_heads, head_dim]", got=x)
        expect(x.dtype.is_float, "kv_quantize x must be float", got=x.dtype)
        b, s, h, d = x.shape
        expect(
            (scale is not None) == (granularity == "per-channel"),
            "a per-channel cache takes a static scale input, the dynamic ones none",
            expected=f"scale input {'given' if granularity == 'per-channel' else 'absent'}",
            got=f"{'a' if scale is not None else 'no'} scale input, granularity {granularity}",
        )
        if scale is not None:
            expect(
                scale.shape == (1, h, 1, d) and scale.dtype == DType.f32,
                "a per-channel KV scale must be f32 [1, kv_heads, 1, head_dim]",
                expected=f"f32[1, {h}, 1, {d}]",
                got=scale,
            )
            scale_type = scale
        else:
            scale_type = TensorType(DType.f32, (b, h if granularity == "per-head" else 1, s, 1))
        return [TensorType(DType(dtype), (b, h, s, d)), scale_type]

    def ref(
        self, x: np.ndarray, scale: np.ndarray | None, dtype: str, granularity: str
    ) -> list[np.ndarray]:
        xt = np.transpose(x.astype(np.float32), (0, 2, 1, 3))  # BNSH
        if scale is None:
            amax = np.max(np.abs(xt), axis=reduce_axes(granularity), keepdims=True)
            scale = np.maximum(amax / np.float32(QMAX[dtype]), FLOOR)
        scaled = xt / scale.astype(np.float32)
        if dtype == "i8":
            q = np.clip(np.rint(scaled), -127, 127).astype(np.int8)
        else:
            q = np.clip(scaled, -QMAX[dtype], QMAX[dtype]).astype(DType(dtype).numpy)
        return [q, scale.astype(np.float32)]

    def flops(self, ins: Any, outs: Any, env: Any, **attrs: Any) -> int:
        """Two per element (the max and the division); the rounding is not a FLOP."""
        return 2 * outs[0].numel(env)
