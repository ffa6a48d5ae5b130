"""An irgraph Graph as a `torch.nn.Module`, and its trained weights back as a Graph.

`GraphModule(graph)` holds every graph parameter as a torch parameter under the
IR's own dotted name (a module tree keyed by the name's parts, so
`module.state_dict()` keys are exactly the IR weight names), and runs the
graph's nodes in order through the torch lowerings registered against the op
names. `forward(**inputs)` takes the graph's named inputs and returns a dict of
its named outputs, like the interpreter, so prefill and cached decode work
unchanged. Float weights are kept in fp32 (the training master copy; the
references compute in fp32 too) and cast back to the IR's dtypes by
`with_weights`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
import torch
from torch import nn

import irgraph.codegen.torch.attention  # noqa: F401  (registers the attention and rotary lowerings)
import irgraph.codegen.torch.moe  # noqa: F401  (registers the MoE lowerings)
from irgraph.codegen.torch.lowerings import (
    LOWERINGS,
    TORCH_DTYPES,
    TorchContext,
    TorchLowering,
)
from irgraph.codegen.torch.quantized import QuantizedWeight
from irgraph.dtypes import DType
from irgraph.errors import CodegenError, IRError
from irgraph.ir import Graph, Node, Value
from irgraph.registry import Dropout, get_op
from irgraph.weights import WeightStore

WeightHook = Callable[[str, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Step:
    fn: TorchLowering  # resolved once, when the module is built
    node: Node
    inputs: tuple[int | None, ...]
    outputs: tuple[int, ...]
    dtypes: tuple[torch.dtype, ...]
    dropout: bool


class GraphModule(nn.Module):
    """`graph` as a torch module.

    Parameters are named as in the IR; forward(**inputs) -> {output: tensor}.
    """

    def __init__(self, graph: Graph, *, dropout: float = 0.0):
        super().__init__()
        if graph.weights is None:
            raise CodegenError(
                f"graph {graph.name!r} has no weights (structure only)", where="target torch"
            )
        LOWERINGS.missing(graph)  # before any weight is copied, naming every op torch lacks
        self.graph_name = graph.name
        self.dropout = dropout
        self.weight_hook: WeightHook | None = (
            None  # e.g. LoRA: maps (name, weight) -> effective weight
        )
        slots: dict[Value, int] = {}  # Values hash by identity: one slot per SSA value

        def slot(v: Value) -> int:
            return slots.setdefault(v, len(slots))

        self.input_slots = [(name, slot(v)) for name, v in graph.inputs.items()]
        self.input_types = {name: v.type for name, v in graph.inputs.items()}
        for name, v in graph.params.items():
            if v.type.quant is not None:  # stored parts as buffers, dequantized in forward
                shape = tuple(int(d) for d in v.type.shape)  # type: ignore[arg-type]
                self._add_weight(name, QuantizedWeight(v.type.quant, shape, graph.stored(name)))
            else:
                self._add_weight(name, _to_tensor(graph.weight(name), v.type.dtype))
        self.param_slots = [(name, slot(v)) for name, v in graph.params.items()]
        users = graph.users()
        self.steps: list[_Step] = []
        for node in graph.nodes:
            # GPT-2's embedding and residual dropout: the op's `dropout` trait says where.
            where = get_op(node.op).dropout
            drop = where is Dropout.ALWAYS or (
                where is Dropout.RESIDUAL
                and any(u.op == "add" for u in users.get(node.outputs[0], []))
            )
            self.steps.append(
                _Step(
                    fn=LOWERINGS[node.op],
                    node=node,
                    inputs=tuple(
                        None if v is None else slots[v] for v in get_op(node.op).pad(node.inputs)
                    ),
                    outputs=tuple(slot(v) for v in node.outputs),
                    dtypes=tuple(
                        TORCH_DTYPES.get(v.type.dtype, torch.float32) for v in node.outputs
                    ),
                    dropout=drop,
                )
            )
        self.output_slots = [(name, slots[v]) for name, v in graph.outputs.items()]
        self.n_slots = len(slots)

    def _add_weight(self, name: str, tensor: torch.Tensor | QuantizedWeight) -> None:
        *path, leaf = name.split(".")
        owner: nn.Module = self
        for part in path:
            child = owner._modules.get(part)
            if child is None:
                if hasattr(owner, part):
                    raise CodegenError(
                        f"weight name {name!r} clashes with another weight or attribute {part!r}",
                        where="target torch",
                    )
                child = nn.Module()
                owner.add_module(part, child)
            owner = child
        try:
            if isinstance(tensor, QuantizedWeight):
                owner.add_module(leaf, tensor)
            elif tensor.is_floating_point():
                owner.register_parameter(leaf, nn.Parameter(tensor.float()))
            else:  # stored integer weights (quantized) are not trained
                owner.register_buffer(leaf, tensor)
        except KeyError as e:
            raise CodegenError(
                f"weight name {name!r} cannot be a torch parameter: {e}", where="target torch"
            ) from None

    def weight(self, name: str) -> Any:
        """The tensor of IR weight `name` (a parameter, a buffer for integer weights, or the
        QuantizedWeight module of a quantized one)."""
        *path, leaf = name.split(".")
        return getattr(self.get_submodule(".".join(path)), leaf)

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        env: list[Any] = [None] * self.n_slots
        missing = [name for name, _ in self.input_slots if name not in inputs]
        unknown = sorted(set(inputs) - {name for name, _ in self.input_slots})
        if missing or unknown:
            raise IRError(
                f"graph {self.graph_name!r} inputs do not match",
                expected=[n for n, _ in self.input_slots],
                got=sorted(inputs),
            )
        for name, i in self.input_slots:
            env[i] = inputs[name]
        hook = self.weight_hook
        for name, i in self.param_slots:
            w = self.weight(name)
            if isinstance(w, QuantizedWeight):
                env[i] = w()
                continue
            env[i] = w if hook is None else hook(name, w)
        autocast = torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")
        ctx = TorchContext(training=self.training)
        for step in self.steps:
            results = step.fn(ctx, step.node, *(None if i is None else env[i] for i in step.inputs))
            for i, res, dtype in zip(step.outputs, results, step.dtypes):
                if res.dtype != dtype and not (
                    autocast and res.is_floating_point() and dtype.is_floating_point
                ):
                    res = res.to(dtype)
                if step.dropout and self.training and self.dropout > 0:
                    res = nn.functional.dropout(res, self.dropout, training=True)
                env[i] = res
        return {name: env[i] for name, i in self.output_slots}


def to_torch(graph: Graph, *, dropout: float = 0.0) -> GraphModule:
    """Lower `graph` to a torch module; one CodegenError names every op without a torch lowering."""
    return GraphModule(graph, dropout=dropout)


def _to_tensor(array: np.ndarray, dtype: DType) -> torch.Tensor:
    a = np.asarray(array)
    if a.dtype == ml_dtypes.bfloat16:  # torch cannot read numpy bfloat16; go through the raw bits
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(a, copy=True))


def to_numpy(t: torch.Tensor, dtype: DType) -> np.ndarray:
    """A detached tensor as a numpy array of the IR dtype `dtype`."""
    t = t.detach().cpu()
    if dtype is DType.bf16:
        return t.to(torch.bfloat16).view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.to(TORCH_DTYPES[dtype]).numpy() if dtype in TORCH_DTYPES else t.numpy()


def with_weights(graph: Graph, weights: nn.Module | Mapping[str, torch.Tensor]) -> Graph:
    """A new Graph, same structure as `graph`, with `weights` (a GraphModule or its state_dict).

    Names must match the IR's exactly; every parameter must be present and
    keep its shape; values are cast to the IR's dtypes.
    """
    quantized = [name for name, v in graph.params.items() if v.type.quant is not None]
    if quantized:
        raise CodegenError(
            f"cannot write torch weights back into a quantized graph (@{quantized[0]}, ...)",
            expected="a float graph (quantize after training)",
            where="target torch",
        )
    state = weights.state_dict() if isinstance(weights, nn.Module) else dict(weights)
    arrays = {}
    for name, v in graph.params.items():
        if name not in state:
            raise CodegenError(
                f"weight {name!r} missing from the torch state", where="target torch"
            )
        t = state[name]
        if tuple(t.shape) != tuple(graph.weight(name).shape):
            raise CodegenError(
                f"weight {name!r} has the wrong shape",
                expected=tuple(graph.weight(name).shape),
                got=tuple(t.shape),
                where="target torch",
            )
        arrays[name] = to_numpy(t, v.type.dtype)
    return Graph(
        name=graph.name,
        inputs=dict(graph.inputs),
        params=dict(graph.params),
        nodes=list(graph.nodes),
        outputs=dict(graph.outputs),
        meta=dict(graph.meta),
        weights=WeightStore.from_arrays(arrays),
    )


def torch_feeds(
    feeds: Mapping[str, np.ndarray], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(a)).to(device) for name, a in feeds.items()}


def numpy_runner(
    module: GraphModule,
) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """`run(feeds) -> outputs` over numpy arrays, for `irgraph.lm.forward`.

    Serves prefill and cached decode.
    """

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = module(**torch_feeds(feeds))
        return {name: t.detach().cpu().numpy() for name, t in out.items()}

    return run


class Positional(nn.Module):
    """`module` with positional inputs and a tuple of outputs.

    Inputs in graph input order, outputs in graph output order.

    The form `torch.export` and ONNX-style consumers want: a flat signature.
    """

    def __init__(self, module: GraphModule):
        super().__init__()
        self.inner = module
        self.input_names = [name for name, _ in module.input_slots]
        self.output_names = [name for name, _ in module.output_slots]

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.inner(**dict(zip(self.input_names, tensors)))
        return tuple(out[name] for name in self.output_names)


def export(module: GraphModule, feeds: Mapping[str, torch.Tensor]) -> torch.export.ExportedProgram:
    """`torch.export` of `module` with the graph's symbolic dims (batch, seq, past) left dynamic.

    The program takes the graph inputs positionally (graph order) and returns
    the outputs as a tuple (graph order; see `Positional`). Pick example sizes
    above 1 and distinct (e.g. batch 2, seq 3, past 4), or torch may tie dims
    that happen to be equal.
    """
    flat = Positional(module)
    args = tuple(feeds[name] for name in flat.input_names)
    dynamic = tuple(
        {
            axis: torch.export.Dim.AUTO
            for axis, d in enumerate(module.input_types[name].shape)
            if not isinstance(d, int)
        }
        for name in flat.input_names
    )
    # Size-oblivious reasoning keeps 0 and 1 in range: decode (seq 1) and prefill (past 0) share
    # one program.
    # torch's config modules gain `patch` at import (install_config_module), unseen by mypy
    with torch.fx.experimental._config.patch(  # type: ignore[attr-defined]
        backed_size_oblivious=True
    ):
        return torch.export.export(
            flat, args, dynamic_shapes=(dynamic,), strict=False
        )  # one *tensors argument
