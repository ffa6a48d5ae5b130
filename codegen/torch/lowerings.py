"""Torch lowerings of the elementwise, tensor and nn ops: one function per registry op.

A lowering follows the one convention of `irgraph.codegen.lowering`:
`fn(ctx: TorchContext, node: Node, *inputs) -> tuple[Tensor, ...]`, the inputs
being tensors (None for an absent optional input) and the attributes read from
`node.attrs`. Each mirrors the op's numpy reference in `irgraph.ops` (fp32
math), but stays differentiable and traceable by `torch.export` (shapes are
read from tensors, never from data). `GraphModule` resolves each node's
lowering once, when the module is built.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from irgraph.activations import ACTIVATIONS as CORE_ACTIVATIONS
from irgraph.codegen.lowering import Lowering, LoweringTable
from irgraph.dtypes import DType
from irgraph.ir import Node
from irgraph.quant import ACT_I8_TOKEN, ACT_NONE, ACT_QMAX


@dataclass(frozen=True)
class TorchContext:
    """What a torch lowering may read besides its node and inputs: the module's mode."""

    training: bool = False


LOWERINGS: LoweringTable[TorchContext, torch.Tensor] = LoweringTable("torch")
lowers = LOWERINGS.lowers
TorchLowering = Lowering[TorchContext, torch.Tensor]

TORCH_DTYPES = {
    DType.f32: torch.float32,
    DType.f16: torch.float16,
    DType.bf16: torch.bfloat16,
    DType.i64: torch.int64,
    DType.i32: torch.int32,
    DType.i8: torch.int8,
    DType.u8: torch.uint8,
    DType.f8e4m3: torch.float8_e4m3fn,
    DType.bool: torch.bool,
}


def f32(x: torch.Tensor) -> torch.Tensor:
    """Float tensors compute in fp32 or wider, as the references do (bf16 autocast aside)."""
    if x.dtype in (torch.float16, torch.bfloat16) and not torch.is_autocast_enabled(x.device.type):
        return x.float()
    return x


# -- elementwise --------------------------------------------------------------------------


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


# One entry per name in irgraph.activations.ACTIVATIONS (a test checks the keys match).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "relu2": lambda x: torch.square(torch.relu(x)),
    "gelu": F.gelu,
    "gelu_tanh": _gelu_tanh,
    "fast_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
}

_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "neg": torch.neg,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "tanh": torch.tanh,
    "sin": torch.sin,
    "cos": torch.cos,
    "erf": torch.erf,
    # the activation ops of irgraph.activations, by the same names
    **{name: ACTIVATIONS[name] for name, a in CORE_ACTIVATIONS.items() if a.unary_op},
}
_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "pow": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
}


def _unary_lowering(fn: Callable[[torch.Tensor], torch.Tensor]) -> TorchLowering:
    return lambda ctx, node, x: (fn(f32(x)),)


def _binary_lowering(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> TorchLowering:
    return lambda ctx, node, a, b: (fn(f32(a), f32(b)),)


for _name, _unary_fn in _UNARY.items():
    LOWERINGS[_name] = _unary_lowering(_unary_fn)
for _name, _binary_fn in _BINARY.items():
    LOWERINGS[_name] = _binary_lowering(_binary_fn)


@lowers("gelu")
def _gelu(ctx: TorchContext, node: Node, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (F.gelu(f32(x), approximate=node.attrs["approximate"]),)


@lowers("scale")
def _scale(ctx: TorchContext, node: Node, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (f32(x) * node.attrs["factor"],)


@lowers("glu")
def _glu(
    ctx: TorchContext, node: Node, gate: torch.Tensor, up: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    return (ACTIVATIONS[node.attrs["act"]](f32(gate)) * f32(up),)


# -- tensor -------------------------------------------------------------------------------


@lowers("matmul")
def _matmul(
    ctx: TorchContext, node: Node, a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    return (torch.matmul(f32(a), f32(b)),)


@lowers("reshape")
def _reshape(ctx: TorchContext, node: Node, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    shape = node.attrs["shape"]
    target = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]  # ONNX: 0 copies the dim
    if torch.compiler.is_exporting():
        # Whether a strided view can be reshaped in place depends on dims being 1: copy instead,
        # or torch.export pins `seq != 1` (and loses decode).
        x = x.clone(memory_format=torch.contiguous_format)
    return (x.reshape(target),)


@lowers("transpose")
def _transpose(ctx: TorchContext, node: Node, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (x.permute(*node.attrs["perm"]),)


@lowers("concat")
def _concat(ctx: TorchContext, node: Node, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.cat(xs, dim=node.attrs["axis"]),)


@lowers("split")
def _split(ctx: TorchContext, node: Node, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    axis, sizes = node.attrs["axis"], node.attrs["sizes"]
    if torch.compiler.is_exporting():
        # Gathered copies, not strided views: reshaping a view makes torch.export pin `seq != 1`.
        bounds = [0, *itertools.accumulate(sizes)]
        return tuple(
            torch.index_select(x, axis, torch.arange(a, b, device=x.device))
            for a, b in zip(bounds, bounds[1:])
        )
    return tuple(torch.split(x, list(sizes), dim=axis))


@lowers("slice")
def _slice(ctx: TorchContext, node: Node, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    a = node.attrs
    index = [slice(None)] * x.dim()
    index[a["axis"]] = slice(a["start"], a["end"], a["step"])
    return (x[tuple(index)],)


@lowers("gather")
def _gather(
    ctx: TorchContext, node: Node, data: torch.Tensor, indices: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    axis = node.attrs["axis"] % data.dim()
    flat = torch.index_select(data, axis, indices.reshape(-1))
    return (flat.reshape(*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :]),)


@lowers("where")
def _where(
    ctx: TorchContext, node: Node, cond: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    return (torch.where(cond, f32(a), f32(b)),)


@lowers("cast")
def _cast(ctx: TorchContext, node: Node, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (x.to(TORCH_DTYPES[DType(node.attrs["dtype"])]),)


@lowers("softmax")
def _softmax(ctx: TorchContext, node: Node, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.softmax(x.float(), dim=node.attrs["axis"]),)


def _reduce(fn: Callable[..., torch.Tensor]) -> TorchLowering:
    def lower(ctx: TorchContext, node: Node, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = f32(x)
        return (fn(x, dim=tuple(node.attrs["axes"]), keepdim=node.attrs["keepdims"]),)

    return lower


LOWERINGS["reduce_sum"] = _reduce(torch.sum)
LOWERINGS["reduce_mean"] = _reduce(torch.mean)
LOWERINGS["reduce_max"] = _reduce(torch.amax)


# -- nn -------------------------------------------------------------------------------------


@lowers("embedding")
def _embedding(
    ctx: TorchContext, node: Node, ids: torch.Tensor, table: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    return (F.embedding(ids, table.float()),)


@lowers("linear")
def _linear(
    ctx: TorchContext, node: Node, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, ...]:
    if not weight.is_floating_point():
        weight = weight.float()  # stored integer weights: the reference casts them, unscaled
    x = f32(x)
    if node.attrs.get("act_quant", ACT_NONE) == ACT_I8_TOKEN:
        return (linear_i8_token(x, f32(weight), None if bias is None else f32(bias)),)
    return (F.linear(x, f32(weight), None if bias is None else f32(bias)),)


def linear_i8_token(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """x·Wᵀ with x quantized to int8 per token (irgraph/quant.py); W is the dequantized qw·sw.

    The rounded activations are qx·sx with qx integers in float32, so (qx·Wᵀ)·sx is the
    integer product rescaled. Gradients pass the rounding straight through (to x and W).
    """
    sx = x.abs().amax(dim=-1, keepdim=True) / ACT_QMAX
    d = torch.where(sx > 0, sx, torch.ones_like(sx))
    qx = torch.clamp(torch.round(x / d), -ACT_QMAX - 1, ACT_QMAX)
    qx = x / d + (qx - x / d).detach()  # straight-through: forward qx, gradient of x / d
    return F.linear(qx, weight, None) * sx + (0 if bias is None else bias)


@lowers("layer_norm")
def _layer_norm(
    ctx: TorchContext, node: Node, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, ...]:
    eps, weight_offset = node.attrs["eps"], node.attrs["weight_offset"]
    w = weight.float() + weight_offset if weight_offset else weight.float()
    return (
        F.layer_norm(x.float(), (x.shape[-1],), w, None if bias is None else bias.float(), eps),
    )


@lowers("rms_norm")
def _rms_norm(
    ctx: TorchContext, node: Node, x: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    eps, weight_offset = node.attrs["eps"], node.attrs["weight_offset"]
    w = weight.float() + weight_offset if weight_offset else weight.float()
    return (F.rms_norm(x.float(), (x.shape[-1],), w, eps),)


@lowers("add_rms_norm")
def _add_rms_norm(
    ctx: TorchContext, node: Node, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    total = f32(x) + f32(residual)
    return (total, *_rms_norm(ctx, node, total, weight))


def attention_scale(head_dim: int, scale: float | None) -> float:
    return 1.0 / math.sqrt(head_dim) if scale is None else scale


__all__ = [
    "ACTIVATIONS",
    "LOWERINGS",
    "TORCH_DTYPES",
    "TorchContext",
    "attention_scale",
    "f32",
    "lowers",
]
