"""Torch lowerings of the elementwise, tensor and nn ops: one function per registry op.

A lowering takes the node's inputs (tensors, None for an absent optional input)
and its attributes, and returns the node's outputs as a tuple. Each mirrors the
op's numpy reference in `irgraph.ops` (fp32 math), but stays differentiable and
traceable by `torch.export` (shapes are read from tensors, never from data).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from irgraph.dtypes import DType
from irgraph.errors import CodegenError

Lowering = Callable[..., tuple[torch.Tensor, ...]]
LOWERINGS: dict[str, Lowering] = {}

TORCH_DTYPES = {
    DType.f32: torch.float32,
    DType.f16: torch.float16,
    DType.bf16: torch.bfloat16,
    DType.i64: torch.int64,
    DType.i32: torch.int32,
    DType.i8: torch.int8,
    DType.u8: torch.uint8,
    DType.bool: torch.bool,
}


def lowering(*names: str) -> Callable[[Lowering], Lowering]:
    """Register `fn` as the torch lowering of ops `names` (each op lowered once)."""

    def wrap(fn: Lowering) -> Lowering:
        for name in names:
            if name in LOWERINGS:
                raise CodegenError(f"torch lowering of {name!r} registered twice")
            LOWERINGS[name] = fn
        return fn

    return wrap


def get_lowering(op: str) -> Lowering:
    try:
        return LOWERINGS[op]
    except KeyError:
        raise CodegenError(
            f"no lowering for op {op!r}",
            expected="an op with a torch lowering",
            got=op,
            where="target torch",
        ) from None


def f32(x: torch.Tensor) -> torch.Tensor:
    """Float tensors compute in fp32 or wider, as the references do (bf16 autocast aside)."""
    if x.dtype in (torch.float16, torch.bfloat16) and not torch.is_autocast_enabled(x.device.type):
        return x.float()
    return x


# -- elementwise --------------------------------------------------------------------------


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "relu2": lambda x: torch.square(torch.relu(x)),
    "gelu": F.gelu,
    "gelu_tanh": _gelu_tanh,
    "fast_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
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
    "sigmoid": torch.sigmoid,
    "relu": ACTIVATIONS["relu"],
    "relu2": ACTIVATIONS["relu2"],
    "silu": F.silu,
    "fast_gelu": ACTIVATIONS["fast_gelu"],
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


def _unary_lowering(fn: Callable[[torch.Tensor], torch.Tensor]) -> Lowering:
    return lambda x: (fn(f32(x)),)


def _binary_lowering(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Lowering:
    return lambda a, b: (fn(f32(a), f32(b)),)


for _name, _fn in _UNARY.items():
    lowering(_name)(_unary_lowering(_fn))
for _name, _fn in _BINARY.items():
    lowering(_name)(_binary_lowering(_fn))


@lowering("gelu")
def _gelu(x, approximate):
    return (F.gelu(f32(x), approximate=approximate),)


@lowering("scale")
def _scale(x, factor):
    return (f32(x) * factor,)


@lowering("glu")
def _glu(gate, up, act):
    return (ACTIVATIONS[act](f32(gate)) * f32(up),)


# -- tensor -------------------------------------------------------------------------------


@lowering("matmul")
def _matmul(a, b):
    return (torch.matmul(f32(a), f32(b)),)


@lowering("reshape")
def _reshape(x, shape):
    target = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]  # ONNX: 0 copies the dim
    if torch.compiler.is_exporting():
        # Whether a strided view can be reshaped in place depends on dims being 1: copy instead,
        # or torch.export pins `seq != 1` (and loses decode).
        x = x.clone(memory_format=torch.contiguous_format)
    return (x.reshape(target),)


@lowering("transpose")
def _transpose(x, perm):
    return (x.permute(*perm),)


@lowering("concat")
def _concat(*xs, axis):
    return (torch.cat(xs, dim=axis),)


@lowering("split")
def _split(x, axis, sizes):
    if torch.compiler.is_exporting():
        # Gathered copies, not strided views: reshaping a view makes torch.export pin `seq != 1`.
        bounds = [0, *itertools.accumulate(sizes)]
        return tuple(
            torch.index_select(x, axis, torch.arange(a, b, device=x.device))
            for a, b in zip(bounds, bounds[1:])
        )
    return tuple(torch.split(x, list(sizes), dim=axis))


@lowering("slice")
def _slice(x, axis, start, end, step):
    index = [slice(None)] * x.dim()
    index[axis] = slice(start, end, step)
    return (x[tuple(index)],)


@lowering("gather")
def _gather(data, indices, axis):
    axis = axis % data.dim()
    flat = torch.index_select(data, axis, indices.reshape(-1))
    return (flat.reshape(*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :]),)


@lowering("where")
def _where(cond, a, b):
    return (torch.where(cond, f32(a), f32(b)),)


@lowering("cast")
def _cast(x, dtype):
    return (x.to(TORCH_DTYPES[DType(dtype)]),)


@lowering("softmax")
def _softmax(x, axis):
    return (torch.softmax(x.float(), dim=axis),)


def _reduce(fn: Callable[..., torch.Tensor]) -> Lowering:
    def lower(x, axes, keepdims):
        x = f32(x)
        return (fn(x, dim=tuple(axes), keepdim=keepdims),)

    return lower


lowering("reduce_sum")(_reduce(torch.sum))
lowering("reduce_mean")(_reduce(torch.mean))
lowering("reduce_max")(_reduce(torch.amax))


# -- nn -------------------------------------------------------------------------------------


@lowering("embedding")
def _embedding(ids, table):
    return (F.embedding(ids, table.float()),)


@lowering("linear")
def _linear(x, weight, bias):
    if not weight.is_floating_point():
        weight = weight.float()  # stored integer weights: the reference casts them, unscaled
    return (F.linear(f32(x), f32(weight), None if bias is None else f32(bias)),)


@lowering("layer_norm")
def _layer_norm(x, weight, bias, eps, weight_offset):
    w = weight.float() + weight_offset if weight_offset else weight.float()
    return (
        F.layer_norm(x.float(), (x.shape[-1],), w, None if bias is None else bias.float(), eps),
    )


@lowering("rms_norm")
def _rms_norm(x, weight, eps, weight_offset):
    w = weight.float() + weight_offset if weight_offset else weight.float()
    return (F.rms_norm(x.float(), (x.shape[-1],), w, eps),)


@lowering("add_rms_norm")
def _add_rms_norm(x, residual, weight, eps, weight_offset):
    total = f32(x) + f32(residual)
    return (total, *_rms_norm(total, weight, eps, weight_offset))


def attention_scale(head_dim: int, scale: float | None) -> float:
    return 1.0 / math.sqrt(head_dim) if scale is None else scale


__all__ = [
    "ACTIVATIONS",
    "LOWERINGS",
    "TORCH_DTYPES",
    "attention_scale",
    "f32",
    "get_lowering",
    "lowering",
]
