"""Byte-reproducible TVM builds: the same graph and target give the same `.so` (issue 12).

Two places in TVM 0.27 order generated code by object address, so two builds of one graph
(even in one process) differed in size and code:

1. `relax.utils.gen_call_tir_inputs` (behind `BlockBuilder.emit_te` and every legalized op)
   collects the symbolic variables a kernel takes as extra scalar arguments in a Python
   `set` of TIR vars, which hash by address, and passes them in that set's iteration order.
   `insertion_ordered_sets()` makes that module's `set()` keep first-use order instead
   (the vars come from `tirx.analysis.undefined_vars`, which visits in a fixed order).
2. `VMShapeLower` emits each `shape_func`'s stores in the iteration order of a map keyed
   by address-hashed expressions. `SortShapeFuncStores` sorts them by heap slot: the
   stores of one shape function only read slots filled before it, so any order is the
   same program.

tests/test_artifact_reproducible.py builds twice and compares every file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import tvm
from tvm import tirx


class _InsertionOrderedSet:
    """The subset of `set` that `_get_unbound_tir_vars` uses, iterating in insertion order."""

    def __init__(self, items: Iterable[Any] = ()):
        self._items = dict.fromkeys(items)

    def add(self, item: Any) -> None:
        self._items[item] = None

    def update(self, items: Iterable[Any]) -> None:
        self._items.update(dict.fromkeys(items))

    def __sub__(self, other: Any) -> _InsertionOrderedSet:
        return _InsertionOrderedSet(x for x in self._items if x not in other)

    def __contains__(self, item: Any) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def insertion_ordered_sets() -> None:
    """Make `tvm.relax.utils` build its sets in insertion order (idempotent)."""
    import tvm.relax.utils as relax_utils

    relax_utils.set = _InsertionOrderedSet  # shadows the builtin in that module only


def _is_shape_func(func: Any) -> bool:
    return (
        isinstance(func, tirx.PrimFunc)
        and func.attrs is not None
        and "tirx.is_host_func" in func.attrs
        and isinstance(func.body, tirx.SeqStmt)
        and all(isinstance(s, tirx.BufferStore) for s in func.body.seq)
    )


@tvm.transform.module_pass(opt_level=0, name="SortShapeFuncStores")
def sort_shape_func_stores(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
    """Each VMShapeLower `shape_func`'s heap stores in slot order."""
    for gv, func in list(mod.functions_items()):
        if _is_shape_func(func):
            stores = sorted(func.body.seq, key=lambda s: int(s.indices[0]))
            mod[gv] = func.with_body(tirx.SeqStmt(stores))
    return mod


insertion_ordered_sets()
