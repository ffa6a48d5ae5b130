"""Lower an irgraph `Graph` to a Relax `IRModule`: one `forward` function, weights as parameters.

Every op has one lowering, registered against the registry's op name with
`@lowers("name")` on the TVM `LoweringTable` (`irgraph.codegen.lowering`); a graph
with ops that have none fails with one CodegenError naming them and the target.
Symbolic dims (`batch`, `seq`, `past`, ...) become `int64` TIR variables shared
by every tensor type, so one build serves every batch size, prompt length and
cache length.

Signature of `forward` (the manifest records it): the graph inputs in graph
order, then one argument per weight in `WeightArg` order; it returns a tuple of
the graph outputs in graph order. The KV cache enters and leaves as ordinary
tensors (`past_key_values.*` in, `present.*` out), exactly as in the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import relax, sym, tirx

from irgraph.codegen.lowering import LoweringTable, legalize
from irgraph.codegen.tvm import vnni_kernels
from irgraph.codegen.tvm.quant_kernels import fusable
from irgraph.codegen.tvm.quantized import dequantized, stored_parts
from irgraph.dtypes import DType
from irgraph.errors import CodegenError
from irgraph.ir import Graph, Node, Value
from irgraph.passes.last_position import FORWARD, FORWARD_LAST, entry_graphs
from irgraph.quant import ACT_NONE
from irgraph.registry import get_op
from irgraph.types import Dim, Sym, TensorType

FUNCTION, FUNCTION_LAST = FORWARD, FORWARD_LAST  # the second: logits_last only (generation)

_DTYPES = {
    DType.f32: "float32",
    DType.f16: "float16",
    DType.bf16: "bfloat16",
    DType.i64: "int64",
    DType.i32: "int32",
    DType.i8: "int8",
    DType.u8: "uint8",
    DType.f8e4m3: "float8_e4m3fn",
    DType.bool: "bool",
}

LOWERINGS: LoweringTable[Context, relax.Expr] = LoweringTable("tvm")
lowers = LOWERINGS.lowers  # `fn(ctx, node, *inputs) -> outputs` (see `irgraph.codegen.lowering`)


def tvm_dtype(dtype: DType, where: str = "") -> str:
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise CodegenError(
            f"dtype {dtype} has no TVM lowering", expected=", ".join(map(str, _DTYPES)), where=where
        ) from None


@dataclass(frozen=True)
class WeightArg:
    """One weight argument of `forward`: which graph parameter, in which layout.

    layout "plain" is the graph's own array; "packed{nb}" is a linear weight
    [out, in] regrouped once, at load time, to [out/nb, in, nb] so the kernel
    streams nb output rows per step with unit stride (see `linear.py`).
    """

    name: str  # the weight-store entry (a quantized param's data, .scales or .zero_points)
    layout: str = "plain"
    param: str = ""  # the quantized graph param this entry is a stored part of

    @property
    def arg_name(self) -> str:
        return self.name if self.layout == "plain" else f"{self.name}#{self.layout}"

    def type(self, graph: Graph) -> tuple[tuple[int, ...], DType]:
        """(shape, dtype) of this argument."""
        if self.param:
            t = graph.params[self.param].type
            assert t.quant is not None  # `param` is set for quantized params only
            shape, dtype = t.quant.stored(static_shape(t))[self.name[len(self.param) :]]
            if self.layout == vnni_kernels.LAYOUT:  # the i4 data, as vnni_kernels reads it
                n, k = static_shape(t)
                return (n // vnni_kernels.NB, k // 8, vnni_kernels.NB), DType.i32
            return _regrouped(shape, self.layout), DType.from_numpy(dtype)
        t = graph.params[self.name].type
        return packed_shape(t, self.layout), t.dtype


def static_shape(t: TensorType) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)  # type: ignore[arg-type]  # params are static


class Context:
    """What a lowering needs: the block builder, the symbolic dims and the target."""

    def __init__(self, bb: relax.BlockBuilder, dims: dict[str, tirx.Var], target: str):
        self.bb = bb
        self.dims = dims
        self.target = target  # "llvm" | "cuda" | "aarch64"
        self.weight_args: dict[str, relax.Var] = {}  # graph param -> its packed-layout argument
        # quantized graph param -> its stored parts (data, scales[, zero points]), packed layout
        self.quant_args: dict[str, list[relax.Var]] = {}
        # quantized tables read only by embeddings -> their plain stored parts (gathered packed)
        self.quant_tables: dict[str, list[relax.Expr]] = {}
        self.kernels: dict[str, relax.GlobalVar] = {}  # shared hand-written kernels by shape
        self.stored: dict[str, list[relax.Expr]] = {}  # quantized param -> its stored parts

    def kernel(self, key: str, make: Callable[[], tirx.PrimFunc]) -> relax.GlobalVar:
        """The module's one GlobalVar for a hand-written kernel variant.

        `make` runs on first use.
        """
        name = "".join(ch if ch.isalnum() else "_" for ch in key)
        if name not in self.kernels:
            self.kernels[name] = self.bb.add_func(make().with_attr("global_symbol", name), name)
        return self.kernels[name]

    def dim(self, d: Dim) -> tirx.PrimExpr:
        if isinstance(d, int):
            return tirx.IntImm("int64", d)
        expr: tirx.PrimExpr = tirx.IntImm("int64", d.const)
        for name, coef in d.terms:
            if name not in self.dims:
                raise CodegenError(
                    f"symbolic dim {name!r} is not bound by any graph input",
                    expected=", ".join(self.dims) or "no symbols",
                )
            expr = expr + self.dims[name] * coef
        return sym.Analyzer().simplify(expr)

    def shape(self, t: TensorType) -> list[tirx.PrimExpr]:
        return [self.dim(d) for d in t.shape]

    def emit(self, expr: relax.Expr) -> relax.Var:
        return self.bb.emit(expr)


def array_const(a: Any) -> relax.Expr:
    """A Relax constant that keeps the numpy dtype.

    relax.const alone narrows float64/int64 to 32 bits.
    """
    a = np.asarray(a)
    return relax.const(a, str(a.dtype))


def symbols(graph: Graph) -> list[str]:
    """Symbolic dim names bound by the graph inputs, in first-seen order."""
    seen: list[str] = []
    for v in graph.inputs.values():
        for name in sorted(v.type.symbols):
            if name not in seen:
                seen.append(name)
    return seen


def dim_vars(graph: Graph) -> dict[str, tirx.PrimExpr]:
    """A TIR expression per symbolic dim, from the shapes of the graph inputs.

    Relax binds a shape variable only where an input's dim is that variable alone. A symbol
    that appears only inside a sum (`past` in attention_mask [batch, past+seq] once a ring
    cache has fixed-size caches) gets that whole dim as a variable of its own, and the symbol
    is that variable minus the rest: past = past_seq - seq.
    """
    names = symbols(graph)
    dims: dict[str, tirx.PrimExpr] = {}
    for v in graph.inputs.values():
        for d in v.type.shape:
            if isinstance(d, Sym) and d.const == 0 and len(d.terms) == 1 and d.terms[0][1] == 1:
                dims.setdefault(d.terms[0][0], tirx.Var(d.terms[0][0], "int64"))
    for v in graph.inputs.values():
        for d in v.type.shape:
            if not isinstance(d, Sym):
                continue
            missing = [(n, c) for n, c in d.terms if n not in dims]
            if len(missing) == 1 and missing[0][1] == 1:
                whole = tirx.Var("_".join(n for n, _ in d.terms), "int64")
                rest = sum((dims[n] * c for n, c in d.terms if n in dims), tirx.IntImm("int64", 0))
                dims[missing[0][0]] = whole - rest - d.const
    return {n: dims.get(n, tirx.Var(n, "int64")) for n in names}


def tensor_type(ctx: Context, t: TensorType, where: str) -> relax.TensorType:
    return relax.TensorType(ctx.shape(t), tvm_dtype(t.dtype, where))


def _weight_layouts(graph: Graph, packed: int, int8_activations: bool = False) -> list[WeightArg]:
    """The weight arguments.

    A packed copy for every linear weight that packs, plain for other uses; with
    `int8_activations`, the int4 weights `vnni_kernels` takes get its layout (scales packed16).
    """
    linear_block: dict[str, int] = {}
    other_uses: set[str] = set()
    for node in graph.nodes:
        for i, v in enumerate(node.inputs):
            if v is None or v.param is None:
                continue
            w8a8 = node.attrs.get("act_quant", ACT_NONE) != ACT_NONE  # reads the plain parts
            block = _block(v.type, packed) if node.op == "linear" and i == 1 and not w8a8 else 0
            if block:
                linear_block[v.param] = block
            else:
                other_uses.add(v.param)
    args = []
    for name, v in graph.params.items():
        if v.type.quant is not None:  # its stored parts: packed for the fused kernels, or
            parts = stored_parts(v.type.quant)  # plain, dequantized at the top of `forward`
            if name in other_uses or name not in linear_block:
                args += [WeightArg(name + part, param=name) for part in parts]
            if name in linear_block:
                layout = f"packed{linear_block[name]}"
                n, k = static_shape(v.type) if v.type.rank == 2 else (0, 0)
                if int8_activations and vnni_kernels.takes(v.type.quant, n, k):
                    data = WeightArg(name + parts[0], vnni_kernels.LAYOUT, param=name)
                    scales = f"packed{vnni_kernels.NB}"
                    args += [data] + [WeightArg(name + p, scales, param=name) for p in parts[1:]]
                    continue
                args += [WeightArg(name + part, layout, param=name) for part in parts]
            continue
        if name in other_uses or name not in linear_block:
            args.append(WeightArg(name))
        if name in linear_block:
            args.append(WeightArg(name, f"packed{linear_block[name]}"))
    return args


def _block(t: TensorType, packed: int) -> int:
    """The packing block for a linear weight.

    `packed`, else half of it, when it divides the rows; else 0. A quantized weight packs
    when the fused kernels take its spec (`quant_kernels.fusable`).
    """
    if t.quant is not None:
        storable = t.rank == 2 and fusable(t.quant, int(t.shape[-1]))  # type: ignore[arg-type]
    else:
        storable = t.dtype.is_float or t.dtype in (DType.i8, DType.u8)
    if not (packed and storable and t.rank == 2 and isinstance(t.shape[0], int)):
        return 0
    return next((nb for nb in (packed, packed // 2) if nb >= 8 and t.shape[0] % nb == 0), 0)


def packed_shape(t: TensorType, layout: str) -> tuple[int, ...]:
    return _regrouped(t.concrete({}), layout)  # a weight's dims are static


def _regrouped(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """The shape of a 2-D array [N, C] in `layout`: itself, or [N/nb, C, nb] for packed{nb}."""
    if layout == "plain":
        return shape
    nb = int(layout.removeprefix("packed"))
    n, k = shape
    return (n // nb, k, nb)


def build_module(
    graph: Graph, target: str, packed: int = 32, int8_activations: bool = False
) -> tuple[tvm.IRModule, list[WeightArg]]:
    """The Relax module of `graph` for `target` and its weight arguments.

    `target` is "llvm", "cuda" or "aarch64".

    It holds `forward` (the graph's outputs but `logits_last`) and, when the graph has
    `logits_last` (pass last-position-logits), `forward_last` (the same inputs and weights,
    its outputs but `logits`); hand-written kernels are shared between the two.
    """
    import irgraph.codegen.tvm.lower_attention  # noqa: F401  (registers the lowerings)
    import irgraph.codegen.tvm.lower_basic  # noqa: F401
    import irgraph.codegen.tvm.lower_moe  # noqa: F401

    graph = legalize(graph)  # compile_graph has done it already (and saved those weights)
    LOWERINGS.missing(graph, where=f"target tvm-{target}")
    bb = relax.BlockBuilder()
    weight_args = _weight_layouts(graph, packed, int8_activations)
    kernels: dict[str, relax.GlobalVar] = {}
    for name, part in entry_graphs(graph).items():
        _emit_function(bb, kernels, part, target, weight_args, name)
    return bb.finalize(), weight_args


def _emit_function(
    bb: relax.BlockBuilder,
    kernels: dict[str, relax.GlobalVar],
    graph: Graph,
    target: str,
    weight_args: list[WeightArg],
    name: str,
) -> None:
    """One Relax function `name`(inputs..., weights...) -> (outputs...) computing `graph`."""
    ctx = Context(bb, dim_vars(graph), target)
    ctx.kernels = kernels
    values: dict[Value, relax.Expr] = {}
    inputs = [relax.Var(n, tensor_type(ctx, v.type, f"input {n}")) for n, v in graph.inputs.items()]
    params = []
    for arg in weight_args:
        shape, dtype = arg.type(graph)
        params.append(
            relax.Var(arg.arg_name, relax.TensorType(shape, tvm_dtype(dtype, f"weight {arg.name}")))
        )
        if arg.layout != "plain" and not arg.param:
            ctx.weight_args[arg.name] = params[-1]
    for v, var in zip(graph.inputs.values(), inputs):
        values[v] = var
    parts: dict[str, list[relax.Expr]] = {}
    for arg, var in zip(weight_args, params):
        if arg.param and arg.layout != "plain":
            ctx.quant_args.setdefault(arg.param, []).append(var)
        elif arg.param:
            parts.setdefault(arg.param, []).append(var)
        elif arg.layout == "plain":
            values[graph.params[arg.name]] = var
    ctx.stored = parts
    with bb.function(name, inputs + params, attrs={"num_input": len(inputs)}):
        with bb.dataflow():
            reads, tables = float_reads(graph), _embedding_only(graph)
            for param, stored in parts.items():
                t = graph.params[param].type
                assert t.quant is not None
                if param in tables:
                    ctx.quant_tables[param] = stored
                elif param in reads:  # W8A8 linears read the stored parts themselves
                    values[graph.params[param]] = dequantized(bb, t.quant, static_shape(t), stored)
            for node in graph.nodes:
                _lower_node(ctx, node, values)
            outs = [values[v] for v in graph.outputs.values()]
            result = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(result)


def float_reads(graph: Graph) -> set[str]:
    """Params some node reads as a float tensor (all but the weights of W8A8 linears)."""
    return {
        v.param
        for node in graph.nodes
        for i, v in enumerate(node.inputs)
        if v is not None
        and v.param is not None
        and not (
            node.op == "linear" and i == 1 and node.attrs.get("act_quant", ACT_NONE) != ACT_NONE
        )
    }


def _embedding_only(graph: Graph) -> set[str]:
    """Quantized params whose every use is an embedding's table (dequantized as gathered)."""
    uses: dict[str, set[tuple[str, int]]] = {}
    for node in graph.nodes:
        for i, v in enumerate(node.inputs):
            if v is not None and v.param is not None and v.type.quant is not None:
                uses.setdefault(v.param, set()).add((node.op, i))
    return {p for p, u in uses.items() if u == {("embedding", 1)}}


def _lower_node(ctx: Context, node: Node, values: dict[Value, relax.Expr]) -> None:
    where = f"node {node.op} -> {node.outputs[0]!r}"
    args: list[relax.Expr | None] = []
    for i, v in enumerate(node.inputs):
        if v is None:
            args.append(None)
        elif v in values:
            args.append(values[v])
        elif v.param is not None and node.op == "linear" and i == 1:
            args.append(None)  # packed weight only: the linear lowering reads ctx.weight_args
        elif v.param in ctx.quant_tables and node.op == "embedding" and i == 1:
            args.append(None)  # the embedding lowering gathers from ctx.quant_tables
        else:
            raise CodegenError(
                "input value has no lowering yet (graph not in topological order?)", where=where
            )
    args = args + [None] * (max(0, _arity(node) - len(args)))
    args = _weights_in_compute_dtype(ctx, node, args)
    try:
        results = LOWERINGS[node.op](ctx, node, *args)
    except CodegenError:
        raise
    except Exception as e:  # TVM raises its own error types; name the node that failed
        raise CodegenError(
            f"TVM lowering failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}", where=where
        ) from e
    for out, res in zip(node.outputs, results):
        values[out] = res


def _weights_in_compute_dtype(
    ctx: Context, node: Node, args: list[relax.Expr | None]
) -> list[relax.Expr | None]:
    """Weights stored narrower than the activations (fp16/bf16 under fp32) are converted for the op.

    The reference computes every op in fp32 from whatever the weights are stored in; Relax ops
    want one dtype, so such a weight is cast where it is used (TVM fuses the cast into the op).
    """
    first = next(
        (v for v in node.inputs if v is not None and v.param is None and v.type.dtype.is_float),
        None,
    )
    if first is None:
        return args
    want = tvm_dtype(first.type.dtype)
    opdef = get_op(node.op)
    own = {opdef.slot(name) for name in opdef.stored_dtype}  # the lowering converts these itself
    out = list(args)
    for i, (v, arg) in enumerate(zip(node.inputs, args)):
        if (
            v is not None
            and arg is not None
            and v.param is not None
            and i not in own
            and v.type.dtype.is_float
            and v.type.dtype != first.type.dtype
        ):
            out[i] = ctx.emit(relax.op.astype(arg, want))
    return out


def _arity(node: Node) -> int:
    opdef = get_op(node.op)
    return len(node.inputs) if opdef.variadic else len(opdef.inputs)
