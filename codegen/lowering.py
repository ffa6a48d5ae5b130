"""One lowering registry for every backend: `LoweringTable`, and the `Lowering` signature.

Each backend keeps one table (`irgraph.codegen.onnx.lowerings.LOWERINGS`, the TVM and
torch ones likewise) and registers one function per IR op name on it:

    LOWERINGS = LoweringTable("onnx")
    lowers = LOWERINGS.lowers

    @lowers("add", "sub")
    def _binary(e: Emitter, node: Node, a: str, b: str) -> list[str]: ...

One calling convention for all of them: `fn(ctx, node, *inputs) -> outputs`. `ctx` is the
backend's context (ONNX: the `Emitter`; TVM: its `Context`; torch: `TorchContext`), `node`
the IR node (attributes are read from `node.attrs`), `inputs` the backend values of the
node's inputs padded to the op's arity (an ONNX name, '' for an absent optional input; a
Relax expression; a torch tensor, None when absent), and `outputs` one backend value per
node output. A second registration of an op is refused, and a graph is checked against
the table before anything is written (`missing`), so an unsupported op fails once, naming
every op the target lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from irgraph.errors import CodegenError
from irgraph.ir import Graph, Node
from irgraph.passes import run_pipeline
from irgraph.types import Dim, Sym

Ctx = TypeVar("Ctx", contravariant=True)
Out = TypeVar("Out", covariant=True)
C = TypeVar("C")
V = TypeVar("V")


class Lowering(Protocol[Ctx, Out]):
    """`fn(ctx, node, *inputs) -> outputs`: one IR node as backend values.

    Generic over the backend's context and value type, so mypy checks that a lowering takes
    its backend's context and returns its values. The inputs are typed `Any` here: Python's
    typing cannot say "any number of positional V" in a way fixed-arity functions such as
    `def _glu(e, node, gate, up)` satisfy; each lowering types its own.
    """

    def __call__(self, ctx: Ctx, node: Node, /, *inputs: Any) -> Sequence[Out]: ...


def static_dim(d: Dim, node: Node, what: str) -> int:
    """`d` as an int, for a dim the backend bakes into its code (a weight's, a head count).

    CodegenError naming `node` and `what` when `d` is symbolic.
    """
    if isinstance(d, Sym):
        raise CodegenError(
            f"{node.op}: {what} must be a static dim", expected="an int", got=str(d), where=node.op
        )
    return d


# Ops the ONNX and TVM backends lower by rewriting them in the IR first, with no lowering of
# their own: latent attention runs absorbed (passes/absorb_latent.py), as the IR states it.
LEGALIZE = {"latent_attention": "absorb-latent"}


def legalize(graph: Graph) -> Graph:
    """`graph` with the ops in LEGALIZE rewritten by their passes (unchanged when it has none)."""
    ops = {n.op for n in graph.nodes}
    pipeline = ",".join(p for op, p in LEGALIZE.items() if op in ops)
    return run_pipeline(graph, pipeline).graph if pipeline else graph


_REQUIRED: Any = object()  # `get`'s "no default given" marker


class LoweringTable(Generic[C, V]):
    """Op name -> lowering for one backend (`target` names it in every error)."""

    def __init__(self, target: str):
        self.target = target
        self._fns: dict[str, Lowering[C, V]] = {}

    def lowers(self, *ops: str) -> Callable[[Lowering[C, V]], Lowering[C, V]]:
        """Decorator: register `fn` as the lowering of each of `ops`.

        A second lowering for an op already registered raises CodegenError.
        """

        def register(fn: Any) -> Any:
            for op in ops:
                self[op] = fn
            return fn

        return register

    def __setitem__(self, op: str, fn: Lowering[C, V]) -> None:
        if op in self._fns:
            raise CodegenError(
                f"op {op!r} has two {self.target} lowerings",
                expected=getattr(self._fns[op], "__qualname__", "one lowering"),
                got=getattr(fn, "__qualname__", repr(fn)),
                where=f"target {self.target}",
            )
        self._fns[op] = fn

    def __delitem__(self, op: str) -> None:
        """Unregister `op` (tests use it, through monkeypatch, to simulate a target lacking it)."""
        del self._fns[op]

    def __getitem__(self, op: str) -> Lowering[C, V]:
        try:
            return self._fns[op]
        except KeyError:
            raise CodegenError(
                f"no {self.target} lowering for op {op!r}",
                expected=", ".join(sorted(self._fns)),
                got=op,
                where=f"target {self.target}",
            ) from None

    def get(self, op: str, default: Any = _REQUIRED) -> Lowering[C, V]:
        """The lowering of `op`; CodegenError when there is none and no `default` is given."""
        if default is not _REQUIRED and op not in self._fns:
            return default
        return self[op]

    def __contains__(self, op: object) -> bool:
        return op in self._fns

    def __iter__(self) -> Iterator[str]:
        return iter(self._fns)

    def __len__(self) -> int:
        return len(self._fns)

    def missing(self, graph: Graph, where: str = "") -> None:
        """Raise one CodegenError naming every op of `graph` this target cannot lower.

        Returns quietly when there is none.

        Called before anything is built or written, so a user learns all the gaps at once;
        `where` overrides the default "target <name>" (e.g. "target tvm-cuda").
        """
        lacking = sorted({n.op for n in graph.nodes if n.op not in self._fns})
        if lacking:
            raise CodegenError(
                f"no {self.target} lowering for op{'s' if len(lacking) > 1 else ''} "
                f"{', '.join(map(repr, lacking))} (graph {graph.name!r})",
                where=where or f"target {self.target}",
            )


__all__ = ["Lowering", "LoweringTable", "static_dim"]
