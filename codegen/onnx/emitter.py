"""The ONNX emitter: names, constants, initializers streamed to external data, and the node list.

A lowering (see `lowerings.py`) turns one IR node into ONNX nodes through an
`Emitter`. Weights never enter the protobuf: each initializer is written to
`model.onnx.data` as soon as it is first used and referenced by offset, so a
checkpoint larger than 2 GB compiles without a second in-memory copy (only one
tensor, converted to the compute dtype, is alive at a time).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from irgraph.dtypes import DType
from irgraph.ir import Graph, Node, Value
from irgraph.progress import Progress, no_progress

DATA_FILE = "model.onnx.data"
_ALIGN, _PAGE = (
    64,
    4096,
)  # tensors of a page or more start on a page (as onnx's own external-data writer)

ONNX_DTYPES = {
    DType.f32: TensorProto.FLOAT,
    DType.f16: TensorProto.FLOAT16,
    DType.bf16: TensorProto.BFLOAT16,
    DType.i64: TensorProto.INT64,
    DType.i32: TensorProto.INT32,
    DType.i8: TensorProto.INT8,
    DType.u8: TensorProto.UINT8,
    DType.f8e4m3: TensorProto.FLOAT8E4M3FN,
    DType.bool: TensorProto.BOOL,
}


class Emitter:
    """Builds one ONNX graph from one IR graph.

    For one flavour ("ort" | "portable") and one compute dtype.
    """

    def __init__(
        self,
        graph: Graph,
        flavour: str,
        dtype: DType,
        data: BinaryIO | None,
        data_name: str = DATA_FILE,
        written: dict[str, TensorProto] | None = None,
        accuracy_level: int = 1,
    ):
        """`written`: external tensors already in `data` (name -> proto), shared by the models
        of one artifact so a weight two models use is stored once; new ones are added to it.
        `accuracy_level`: MatMulNBits' compute (1 fp32, 4 int8 activations; `quantized.py`)."""
        self.graph, self.flavour, self.dtype = graph, flavour, dtype
        self.accuracy_level = accuracy_level
        self.nodes: list[Any] = []
        self.initializers: list[TensorProto] = []
        self._data, self._data_name = data, data_name
        self._offset = data.tell() if data is not None else 0
        self._written = {} if written is None else written
        self._ids = itertools.count()
        self._names: dict[int, str] = {}  # id(Value) -> ONNX name (Values compare by identity)
        self._consts: dict[tuple[Any, ...], str] = {}
        self._weights: dict[tuple[str, str], Callable[[], np.ndarray]] = {}
        self.memo: dict[
            Any, Any
        ] = {}  # lowerings share sub-results (cos/sin tables, masks) through this
        self.flat: dict[
            str, str
        ] = {}  # [B, S, H, D] name -> the [B, S, H·D] tensor it is a view of
        self.producer: dict[int, Node] = {id(o): n for n in graph.nodes for o in n.outputs}
        self.output_of: dict[int, str] = {}  # id(Value) -> the first graph output name it is
        for name, v in graph.outputs.items():
            self.output_of.setdefault(id(v), name)
        for name, v in graph.inputs.items():
            self._names[id(v)] = name

    # -- names -----------------------------------------------------------------------------

    def fresh(self, hint: str = "t") -> str:
        return f"{hint}_{next(self._ids)}"

    def name(self, v: Value | None) -> str:
        """The ONNX name of an IR value ('' for an absent optional input).

        Parameters become initializers.
        """
        if v is None:
            return ""
        if v.param is not None and v.type.quant is not None:
            from irgraph.codegen.onnx.quantized import dequantized

            return dequantized(self, v)
        if v.param is not None:
            return self.weight(v.param)
        return self._names[id(v)]

    def result(self, node: Node, i: int) -> str:
        """The name output i of `node` should get: its graph output name when it is one."""
        v = node.outputs[i]
        return self.output_of.get(id(v)) or self.fresh(v.hint or node.op)

    def bind(self, v: Value, name: str) -> None:
        self._names[id(v)] = name

    # -- types -----------------------------------------------------------------------------

    def onnx_type(self, dtype: DType) -> int:
        """ONNX element type of an IR dtype: float dtypes compute in the chosen precision."""
        return ONNX_DTYPES[self.dtype if dtype.is_float else dtype]

    @property
    def np_float(self) -> Any:
        return self.dtype.numpy

    # -- nodes -----------------------------------------------------------------------------

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        outputs: int | Sequence[str] = 1,
        *,
        domain: str = "",
        **attrs: Any,
    ) -> list[str]:
        """Append one ONNX node; returns its output names (fresh ones when `outputs` is a count)."""
        outs = (
            [self.fresh(op_type.lower()) for _ in range(outputs)]
            if isinstance(outputs, int)
            else list(outputs)
        )
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(
            helper.make_node(
                op_type,
                list(inputs),
                outs,
                name=self.fresh(op_type),
                domain=domain or None,
                **attrs,
            )
        )
        return outs

    def op1(self, op_type: str, *inputs: str, domain: str = "", **attrs: Any) -> str:
        return self.op(op_type, inputs, 1, domain=domain, **attrs)[0]

    # -- constants and weights -------------------------------------------------------------

    def const(self, value: Any, dtype: Any = None) -> str:
        """A small constant initializer (deduplicated). Python floats take the compute dtype."""
        if dtype is None:
            dtype = (
                self.np_float
                if isinstance(value, float)
                or (isinstance(value, np.ndarray) and value.dtype.kind == "f")
                else np.int64
            )
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            name = self.fresh("const")
            self.initializers.append(_tensor(array, name))
            self._consts[key] = name
        return self._consts[key]

    def ints(self, *values: int) -> str:
        return self.const(np.asarray(values, dtype=np.int64))

    def weight(
        self, param: str, variant: str = "", fn: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> str:
        """The initializer for parameter `param`, optionally transformed by `fn`.

        `variant` names the transform.

        Only registered here; `initializer_protos` makes (and writes) the ones the final graph uses.
        """
        name = param if not variant else f"{param}.{variant}"

        def make() -> np.ndarray:
            array = np.asarray(
                self.graph.weight(param)
            )  # memory-mapped: one tensor in memory at a time
            is_float = array.dtype.kind == "f" or array.dtype.name == "bfloat16"
            return (
                fn(array.astype(np.float32, copy=False) if is_float else array)
                if fn is not None
                else array
            )

        return self.derived(name, make)

    def derived(self, name: str, make: Callable[[], np.ndarray]) -> str:
        """An initializer computed from parameters, made when written.

        E.g. a transpose or fused projections.
        """
        self._weights.setdefault((name, "derived"), make)
        return name

    def initializer_protos(
        self, used: set[str], progress: Progress = no_progress
    ) -> list[TensorProto]:
        """Constants plus the used weights, each converted and streamed to the data file in turn
        (`progress` hears of every weight)."""
        protos = [t for t in self.initializers if t.name in used]
        weights = list(self._weights.items())
        for i, ((name, _), make) in enumerate(weights):
            progress(i, len(weights), "writing the ONNX weights")
            if name in used and name in self._written:  # another model of the artifact wrote it
                shared = TensorProto()
                shared.CopyFrom(self._written[name])
                protos.append(shared)
            elif name in used:
                array = np.asarray(make())
                if array.dtype.kind == "f" or array.dtype.name == "bfloat16":
                    array = array.astype(self.np_float, copy=False)
                protos.append(self._external(np.ascontiguousarray(array), name))
                del array
        progress(len(weights), len(weights), "writing the ONNX weights")
        return protos

    def flatten(self, x: str) -> str:
        """x [B, S, H, D] as [B, S, H·D].

        Reuses the tensor it was reshaped from when there is one.
        """
        if x not in self.flat:
            self.flat[x] = self.op1("Reshape", x, self.ints(0, 0, -1))
        return self.flat[x]

    def _external(self, array: np.ndarray, name: str) -> TensorProto:
        if self._data is None or array.nbytes < 1024:
            return _tensor(array, name)
        pad = (-self._offset) % (_PAGE if array.nbytes >= _PAGE else _ALIGN)
        self._data.write(b"\0" * pad)
        self._offset += pad
        tensor = TensorProto(name=name, data_type=_elem_type(array), dims=list(array.shape))
        tensor.data_location = TensorProto.EXTERNAL
        for k, v in (
            ("location", self._data_name),
            ("offset", str(self._offset)),
            ("length", str(array.nbytes)),
        ):
            entry = tensor.external_data.add()
            entry.key, entry.value = k, v
        self._data.write(array.reshape(-1).view(np.uint8).data)
        self._offset += array.nbytes
        self._written[name] = tensor
        return tensor

    # -- common shape helpers --------------------------------------------------------------

    def dim(self, x: str, axis: int) -> str:
        """Dim `axis` of x as an int64 [1] tensor."""
        return self.op1("Shape", x, start=axis, end=axis + 1 if axis != -1 else None)

    def scalar_dim(self, x: str, axis: int) -> str:
        return self.op1("Squeeze", self.dim(x, axis), self.ints(0))


def _elem_type(array: np.ndarray) -> int:
    if array.dtype.name == "bfloat16":
        return TensorProto.BFLOAT16
    return helper.np_dtype_to_tensor_dtype(array.dtype)


def _tensor(array: np.ndarray, name: str) -> TensorProto:
    if array.dtype.name == "bfloat16":
        tensor = TensorProto(name=name, data_type=TensorProto.BFLOAT16, dims=list(array.shape))
        tensor.raw_data = array.view(np.uint16).tobytes()
        return tensor
    return numpy_helper.from_array(array, name)
