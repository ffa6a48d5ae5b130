"""Embedding, linear and normalisation ops.

Weights follow the PyTorch / Hugging Face layout so checkpoints map without
transposes: `linear` weight is `[out_features, in_features]`, y = x·Wᵀ + b.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import IRError
from irgraph.quant import ACT_I8_TOKEN, ACT_NONE, linear_i8_token
from irgraph.registry import Attr, Category, Dropout, IndexBound, OpDef, expect, given, register
from irgraph.types import TensorType


@register
class Embedding(OpDef):
    """table[ids]: token, learned-position or query-position lookup."""

    name = "embedding"
    no_arithmetic = True
    inputs = ("ids", "table")
    category = Category.EMBEDDING
    weights = ("table",)
    stored_dtype = ("table",)  # a quantized table is dequantized per looked-up row
    indices = {"ids": IndexBound("table")}
    dropout = Dropout.ALWAYS

    def infer(self, ids: TensorType, table: TensorType) -> list[TensorType]:
        expect(ids.dtype in (DType.i64, DType.i32), "embedding ids must be integers", got=ids.dtype)
        expect(table.rank == 2, "embedding table must be [rows, dim]", got=table)
        dtype = DType.f32 if not table.dtype.is_float else table.dtype
        return [TensorType(dtype, (*ids.shape, table.shape[1]))]

    def ref(self, ids: np.ndarray, table: np.ndarray) -> list[np.ndarray]:
        # np.take would wrap a negative id around silently; torch and every backend reject it.
        if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise IRError("embedding id out of range", expected=f"0..{table.shape[0] - 1}", got=bad)
        return [np.take(table, ids, axis=0).astype(np.float32)]


@register
class Linear(OpDef):
    """x·Wᵀ (+ b), W: [out, in]. The weight may be any float or quantized dtype.

    act_quant="i8_token" (W8A8, quantize(method=w8a8)): x is quantized to int8 per token at run
    time and multiplied in integers with an i8<ch,sym> weight (irgraph/quant.py defines it).
    """

    name = "linear"
    inputs = ("x", "weight", "bias?")
    category = Category.LINEAR
    weights = ("weight", "bias")
    stored_dtype = ("weight", "bias")  # converted inside the kernel
    attrs = {
        "act_quant": Attr(
            "str",
            ACT_NONE,
            choices=(ACT_NONE, ACT_I8_TOKEN),
            doc="activations: float, or int8 with one dynamic scale per token",
        )
    }
    dropout = Dropout.RESIDUAL

    def infer(
        self,
        x: TensorType,
        weight: TensorType,
        bias: TensorType | None,
        act_quant: str = ACT_NONE,
    ) -> list[TensorType]:
        expect(weight.rank == 2, "linear weight must be [out, in]", got=weight)
        if act_quant == ACT_I8_TOKEN:
            q = weight.quant
            expect(
                q is not None and q.bits == 8 and q.group == 0 and q.sym,
                'linear act_quant="i8_token" needs an int8 per-channel symmetric weight',
                expected="i8<ch,sym,f16|f32>",
                got=weight,
            )
            expect(x.dtype.is_float, "linear act_quant input must be float", got=x.dtype)
        expect(
            x.shape[-1] == weight.shape[1],
            "linear input features differ from weight [out, in]",
            expected=weight.shape[1],
            got=x.shape[-1],
        )
        if bias is not None:
            expect(
                bias.shape == (weight.shape[0],),
                "linear bias must be [out]",
                expected=(weight.shape[0],),
                got=bias.shape,
            )
        return [TensorType(x.dtype, (*x.shape[:-1], weight.shape[0]))]

    def ref(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        act_quant: str = ACT_NONE,
    ) -> list[np.ndarray]:
        if act_quant == ACT_I8_TOKEN:
            y = linear_i8_token(x, weight)
        else:
            y = x.astype(np.float32) @ weight.astype(np.float32).T
        return [y if bias is None else y + bias.astype(np.float32)]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        return 2 * outs[0].numel(env) * int(given(ins, 1).concrete(env)[1])


def _check_norm(op: str, x: TensorType, w: TensorType | None) -> None:
    if w is not None:
        expect(
            w.shape == (x.shape[-1],),
            f"{op} weight must match the last dim",
            expected=(x.shape[-1],),
            got=w.shape,
        )


@register
class LayerNorm(OpDef):
    """(x - mean) / sqrt(var + eps) · (w + weight_offset) + b over the last dim.

    weight_offset=1 is Nemotron's "layernorm1p" (weights stored as w - 1).
    """

    name = "layer_norm"
    inputs = ("x", "weight", "bias?")
    category = Category.NORM
    weights = ("weight", "bias")
    attrs = {"eps": Attr("float", 1e-5), "weight_offset": Attr("float", 0.0)}

    def infer(
        self,
        x: TensorType,
        weight: TensorType,
        bias: TensorType | None,
        eps: float,
        weight_offset: float,
    ) -> list[TensorType]:
        _check_norm(self.name, x, weight)
        _check_norm(self.name, x, bias)
        return [x]

    def ref(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        eps: float,
        weight_offset: float,
    ) -> list[np.ndarray]:
        x = x.astype(np.float32)
        mean = x.mean(-1, keepdims=True)
        var = np.square(x - mean).mean(-1, keepdims=True)
        y = (
            (x - mean)
            / np.sqrt(var + np.float32(eps))
            * (weight.astype(np.float32) + np.float32(weight_offset))
        )
        return [y if bias is None else y + bias.astype(np.float32)]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        return 8 * outs[0].numel(env)


@register
class RmsNorm(OpDef):
    """x / sqrt(mean(x²) + eps) · (w + weight_offset) over the last dim (Zhang & Sennrich)."""

    name = "rms_norm"
    inputs = ("x", "weight")
    category = Category.NORM
    weights = ("weight",)
    attrs = {"eps": Attr("float", 1e-6), "weight_offset": Attr("float", 0.0)}

    def infer(
        self, x: TensorType, weight: TensorType, eps: float, weight_offset: float
    ) -> list[TensorType]:
        _check_norm(self.name, x, weight)
        return [x]

    def ref(
        self, x: np.ndarray, weight: np.ndarray, eps: float, weight_offset: float
    ) -> list[np.ndarray]:
        x = x.astype(np.float32)
        rms = np.sqrt(np.square(x).mean(-1, keepdims=True) + np.float32(eps))
        return [x / rms * (weight.astype(np.float32) + np.float32(weight_offset))]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        return 5 * outs[0].numel(env)


@register
class AddRmsNorm(OpDef):
    """sum = x + residual and rms_norm(sum): a pre-norm block's residual add and the next norm.

    One op so a backend can emit one kernel for both (ORT's SkipSimplifiedLayerNormalization);
    `fuse-add-norm` makes it from `add` + `rms_norm`. Both results are the same numbers as the
    two ops compute.
    """

    name = "add_rms_norm"
    inputs = ("x", "residual", "weight")
    outputs = ("sum", "normed")
    category = Category.NORM
    weights = ("weight",)
    attrs = {"eps": Attr("float", 1e-6), "weight_offset": Attr("float", 0.0)}

    def infer(
        self,
        x: TensorType,
        residual: TensorType,
        weight: TensorType,
        eps: float,
        weight_offset: float,
    ) -> list[TensorType]:
        expect(
            x == residual,
            "add_rms_norm x and residual must have one type",
            expected=x,
            got=residual,
        )
        _check_norm(self.name, x, weight)
        return [x, x]

    def ref(
        self,
        x: np.ndarray,
        residual: np.ndarray,
        weight: np.ndarray,
        eps: float,
        weight_offset: float,
    ) -> list[np.ndarray]:
        total = x.astype(np.float32) + residual.astype(np.float32)
        return [total, *RmsNorm().ref(total, weight, eps, weight_offset)]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        return 6 * outs[0].numel(env)
