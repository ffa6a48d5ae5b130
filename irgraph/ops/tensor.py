"""Shape and data-movement ops: matmul, reshape, transpose, concat, split, gather, ...

Reshape follows ONNX: a 0 in `shape` copies the input dim at that position (so
`[0, 0, 8, 64]` splits heads of a `[batch, seq, 512]` tensor without naming the
symbolic dims), and one -1 is inferred from the element count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.registry import (
    Attr,
    Category,
    IndexBound,
    OpDef,
    broadcast_shapes,
    expect,
    given,
    norm_axis,
    register,
)
from irgraph.types import Dim, Sym, TensorType, add_dims

BIG = 2**62  # "to the end" for slice


@register
class Matmul(OpDef):
    """Batched matrix product with numpy broadcasting of the leading dims."""

    name = "matmul"
    inputs = ("a", "b")
    category = Category.LINEAR

    def infer(self, a: TensorType, b: TensorType) -> list[TensorType]:
        expect(
            a.rank >= 2 and b.rank >= 2,
            "matmul needs rank >= 2",
            expected=">= 2",
            got=(a.rank, b.rank),
        )
        expect(
            a.shape[-1] == b.shape[-2],
            "matmul inner dims differ",
            expected=a.shape[-1],
            got=b.shape[-2],
        )
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return [TensorType(a.dtype, (*batch, a.shape[-2], b.shape[-1]))]

    def ref(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        return [np.matmul(a.astype(np.float32), b.astype(np.float32))]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        return 2 * outs[0].numel(env) * int(given(ins, 0).concrete(env)[-1])


@register
class Reshape(OpDef):
    name = "reshape"
    no_arithmetic = True
    inputs = ("x",)
    category = Category.DATA_MOVEMENT
    transparent = True
    attrs = {"shape": Attr("ints", doc="0 copies the input dim, -1 is inferred")}

    def infer(self, x: TensorType, shape: tuple[int, ...]) -> list[TensorType]:
        out: list[Dim] = []
        for i, d in enumerate(shape):
            if d == 0:
                expect(
                    i < x.rank,
                    "reshape 0 refers past the input rank",
                    expected=f"< {x.rank}",
                    got=i,
                )
                out.append(x.shape[i])
            else:
                out.append(d)
        if -1 in out:
            known = [d for d in out if d != -1]
            expect(out.count(-1) == 1, "reshape allows one -1", got=list(shape))
            out[out.index(-1)] = _divide(x.shape, known)
        expect(
            _same_numel(x.shape, out),
            "reshape changes the element count",
            expected=_fmt(x.shape),
            got=_fmt(out),
        )
        return [x.with_shape(tuple(out))]

    def ref(self, x: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
        return [x.reshape(target)]


def _fmt(shape: Any) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _split_numel(shape: Any) -> tuple[int, list[Sym]]:
    n, syms = 1, []
    for d in shape:
        if isinstance(d, int):
            n *= d
        else:
            syms.append(d)
    return n, syms


def _same_numel(a: Any, b: Any) -> bool:
    na, sa = _split_numel(a)
    nb, sb = _split_numel(b)
    return na == nb and sorted(map(str, sa)) == sorted(map(str, sb))


def _divide(total: Any, known: list[Dim]) -> Dim:
    nt, st = _split_numel(total)
    nk, sk = _split_numel(known)
    rest = [s for s in st if str(s) not in {str(k) for k in sk}]
    expect(
        len(rest) <= 1 and nk != 0 and nt % nk == 0,
        "cannot infer the -1 of reshape",
        expected="a whole number of elements",
        got=f"{_fmt(total)} / {_fmt(known)}",
    )
    if rest:
        expect(nt // nk == 1, "cannot infer a -1 that multiplies a symbolic dim", got=_fmt(total))
        return rest[0]
    return nt // nk


@register
class Transpose(OpDef):
    name = "transpose"
    no_arithmetic = True
    inputs = ("x",)
    category = Category.DATA_MOVEMENT
    transparent = True
    attrs = {"perm": Attr("ints")}

    def infer(self, x: TensorType, perm: tuple[int, ...]) -> list[TensorType]:
        expect(
            sorted(perm) == list(range(x.rank)),
            "transpose perm is not a permutation of the axes",
            expected=list(range(x.rank)),
            got=list(perm),
        )
        return [x.with_shape(tuple(x.shape[p] for p in perm))]

    def ref(self, x: np.ndarray, perm: tuple[int, ...]) -> list[np.ndarray]:
        return [np.ascontiguousarray(np.transpose(x, perm))]


@register
class Concat(OpDef):
    name = "concat"
    no_arithmetic = True
    inputs = ("*xs",)
    category = Category.DATA_MOVEMENT
    attrs = {"axis": Attr("int")}

    def infer(self, *xs: TensorType, axis: int) -> list[TensorType]:
        first = xs[0]
        ax = norm_axis(axis, first.rank)
        total: Dim = 0
        for x in xs:
            expect(
                x.dtype == first.dtype and x.rank == first.rank,
                "concat operands differ",
                expected=first,
                got=x,
            )
            for i, (d0, d) in enumerate(zip(first.shape, x.shape)):
                expect(i == ax or d0 == d, f"concat operands differ in dim {i}", expected=d0, got=d)
            total = add_dims(total, x.shape[ax])
        shape = list(first.shape)
        shape[ax] = total
        return [first.with_shape(tuple(shape))]

    def ref(self, *xs: np.ndarray, axis: int) -> list[np.ndarray]:
        return [np.concatenate(xs, axis=axis)]


@register
class Split(OpDef):
    """Split along `axis` into pieces of the given sizes; one output per piece."""

    name = "split"
    no_arithmetic = True
    inputs = ("x",)
    category = Category.DATA_MOVEMENT
    transparent = True
    outputs = ("*ys",)
    attrs = {"axis": Attr("int"), "sizes": Attr("ints")}

    def infer(self, x: TensorType, axis: int, sizes: tuple[int, ...]) -> list[TensorType]:
        ax = norm_axis(axis, x.rank)
        expect(
            x.shape[ax] == sum(sizes),
            "split sizes do not add up to the dim",
            expected=x.shape[ax],
            got=sum(sizes),
        )
        return [
            x.with_shape(tuple(s if i == ax else d for i, d in enumerate(x.shape))) for s in sizes
        ]

    def ref(self, x: np.ndarray, axis: int, sizes: tuple[int, ...]) -> list[np.ndarray]:
        return list(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


@register
class Slice(OpDef):
    """x[start:end:step] along one axis (end clamps; negative start/end count from the end)."""

    name = "slice"
    no_arithmetic = True
    inputs = ("x",)
    category = Category.DATA_MOVEMENT
    transparent = True
    attrs = {
        "axis": Attr("int"),
        "start": Attr("int"),
        "end": Attr("int", BIG),
        "step": Attr("int", 1),
    }

    def infer(self, x: TensorType, axis: int, start: int, end: int, step: int) -> list[TensorType]:
        ax = norm_axis(axis, x.rank)
        expect(step >= 1, "slice step must be positive", got=step)
        d = x.shape[ax]
        n: Dim
        if isinstance(d, int):
            n = len(range(*slice(start, end, step).indices(d)))
        elif start == 0 and end >= BIG and step == 1:
            n = d
        elif start < 0 and end >= BIG and step == 1:
            n = -start  # the last -start elements; the verifier trusts the dim is long enough
        else:
            n = -1
            expect(
                False,
                "slice of a symbolic dim must be [0:] or [-k:]",
                got=f"{d}[{start}:{end}:{step}]",
            )
        shape = list(x.shape)
        shape[ax] = n
        return [x.with_shape(tuple(shape))]

    def ref(self, x: np.ndarray, axis: int, start: int, end: int, step: int) -> list[np.ndarray]:
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, end, step)
        return [x[tuple(index)]]


@register
class Gather(OpDef):
    """data indexed by integer `indices` along `axis` (numpy.take)."""

    name = "gather"
    no_arithmetic = True
    inputs = ("data", "indices")
    category = Category.DATA_MOVEMENT
    indices = {"indices": IndexBound("data", axis_attr="axis", negative=True)}
    attrs = {"axis": Attr("int", 0)}

    def infer(self, data: TensorType, indices: TensorType, axis: int) -> list[TensorType]:
        ax = norm_axis(axis, data.rank)
        expect(
            indices.dtype in (DType.i64, DType.i32),
            "gather indices must be integers",
            got=indices.dtype,
        )
        return [data.with_shape((*data.shape[:ax], *indices.shape, *data.shape[ax + 1 :]))]

    def ref(self, data: np.ndarray, indices: np.ndarray, axis: int) -> list[np.ndarray]:
        return [np.take(data, indices, axis=axis)]


@register
class Where(OpDef):
    name = "where"
    inputs = ("cond", "a", "b")
    category = Category.ELEMENTWISE

    def infer(self, cond: TensorType, a: TensorType, b: TensorType) -> list[TensorType]:
        expect(cond.dtype == DType.bool, "where condition must be bool", got=cond.dtype)
        expect(a.dtype == b.dtype, "where branches differ in dtype", expected=a.dtype, got=b.dtype)
        return [TensorType(a.dtype, broadcast_shapes(cond.shape, a.shape, b.shape))]

    def ref(self, cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        return [np.where(cond, a, b)]


@register
class Cast(OpDef):
    name = "cast"
    inputs = ("x",)
    category = Category.ELEMENTWISE
    transparent = True  # a cast projection keeps its role
    attrs = {"dtype": Attr("str", choices=tuple(d.value for d in DType if not d.is_packed))}

    def infer(self, x: TensorType, dtype: str) -> list[TensorType]:
        return [x.with_dtype(DType(dtype))]

    def ref(self, x: np.ndarray, dtype: str) -> list[np.ndarray]:
        return [x.astype(DType(dtype).numpy)]


@register
class Softmax(OpDef):
    name = "softmax"
    inputs = ("x",)
    category = Category.REDUCTION
    attrs = {"axis": Attr("int", -1)}

    def infer(self, x: TensorType, axis: int) -> list[TensorType]:
        norm_axis(axis, x.rank)
        return [x]

    def ref(self, x: np.ndarray, axis: int) -> list[np.ndarray]:
        return [softmax_np(x.astype(np.float32), axis)]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        return 5 * outs[0].numel(env)


def softmax_np(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def _reduce(op_name: str, fn: Any) -> None:
    class Reduce(OpDef):
        name = op_name
        inputs = ("x",)
        category = Category.REDUCTION
        attrs = {"axes": Attr("ints"), "keepdims": Attr("bool", True)}

        def infer(self, x: TensorType, axes: tuple[int, ...], keepdims: bool) -> list[TensorType]:
            axs = {norm_axis(a, x.rank) for a in axes}
            shape = [
                1 if i in axs else d for i, d in enumerate(x.shape) if keepdims or i not in axs
            ]
            return [x.with_shape(tuple(shape))]

        def ref(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> list[np.ndarray]:
            return [
                fn(
                    x.astype(np.float32) if x.dtype.kind == "f" else x,
                    axis=tuple(axes),
                    keepdims=keepdims,
                )
            ]

    Reduce.__name__ = Reduce.__qualname__ = op_name
    register(Reduce)


for _name, _fn in (("reduce_sum", np.sum), ("reduce_mean", np.mean), ("reduce_max", np.max)):
    _reduce(_name, _fn)
