"""What every runtime checks about the inputs fed to a model, before any backend sees them.

The reference interpreter refuses a token id outside the embedding table; a compiled
backend would read past it (TVM: garbage, exit 0) or fail deep inside (ONNX Runtime: a raw
traceback). So every session (`irgraph.runtimes.base.Session`) runs `check_feeds` first:

  names     exactly the model's inputs (generation steps may pass the session's own cache
            values, e.g. ORT values or TVM tensors: those are the session's, not checked)
  dtypes    integer inputs take integer (or bool) arrays, float inputs float arrays
  shapes    ranks, fixed dims, and symbolic dims that agree across inputs (`batch` is one
            number; `past+seq` of the mask is the cache's past plus the new tokens)
  values    every index input (token ids, learned positions) within its table, from
            `index_bounds`; position ids never negative; masks of 0s and 1s
  context   past + new tokens within a learned position table (`context_limit`)

`index_bounds(graph)` reads the bounds from the op registry (`OpDef.indices`): an
embedding whose ids are a graph input bounds that input by its table's rows. Compiled
artifacts carry them in their manifest (`input_bounds`), so a session needs no graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import InputError
from irgraph.ir import Graph
from irgraph.lm import BLOCK_TABLE, CACHE_LENS, PAST_PREFIX
from irgraph.types import TensorType

POSITION_INPUTS = ("position_ids", "encoder_position_ids")
MASK_INPUTS = ("attention_mask", "encoder_attention_mask")


def index_bounds(graph: Graph) -> dict[str, int]:
    """Graph input name -> exclusive upper bound of its values (the rows of the table it indexes).

    Read from the op registry: an op input declared an index (`OpDef.indices`) that is a graph
    input directly, into a table of concrete size. The smallest bound wins if several ops use it.
    """
    from irgraph.registry import get_op

    by_value = {v: name for name, v in graph.inputs.items()}
    bounds: dict[str, int] = {}
    for node in graph.nodes:
        opdef = get_op(node.op)
        for index, bound in opdef.indices.items():
            if bound.negative:  # a bound of [-n, n): not the 0..n-1 `check_feeds` checks
                continue
            ids = node.inputs[opdef.inputs.index(index)]
            table = node.inputs[opdef.inputs.index(bound.table)]
            if ids not in by_value or table is None:
                continue
            rows = bound.bound(table.type, node.attrs)
            if isinstance(rows, int):
                name = by_value[ids]
                bounds[name] = min(rows, bounds.get(name, rows))
    return bounds


def bounds_from_manifest(manifest: Mapping[str, Any]) -> dict[str, int]:
    """An artifact's `input_bounds`; artifacts written before them: the token inputs by the
    vocab size in their meta (which does not say whether positions are learned)."""
    recorded = manifest.get("input_bounds")
    if isinstance(recorded, dict):
        return {str(k): int(v) for k, v in recorded.items()}
    vocab = (manifest.get("meta") or {}).get("vocab_size")
    names = [e.get("name") for e in manifest.get("inputs") or ()]
    tokens = ("input_ids", "decoder_input_ids")
    return {n: int(vocab) for n in names if n in tokens} if isinstance(vocab, int) else {}


def context_limit(bounds: Mapping[str, int]) -> int | None:
    """The most tokens (past + new) the model can attend over: its learned position table's rows.

    None for models whose positions have no table (rotary, ALiBi, relative): those run past
    their training context, as their reference implementations do.
    """
    return bounds.get("position_ids")


def bind_dims(
    inputs: Mapping[str, TensorType], shapes: Mapping[str, tuple[int, ...]], where: str = ""
) -> dict[str, int]:
    """Values of the symbolic dims implied by the fed `shapes`; InputError on any mismatch.

    Inputs missing from `shapes` are skipped (a session's own cache values).
    """
    env: dict[str, int] = {}
    pending = []
    for name, t in inputs.items():
        if name not in shapes:
            continue
        shape = tuple(shapes[name])
        if len(shape) != t.rank:
            raise InputError(
                f"input {name!r} has the wrong rank", expected=str(t), got=list(shape), where=where
            )
        for d, n in zip(t.shape, shape):
            if isinstance(d, int):
                if d != n:
                    raise InputError(
                        f"input {name!r} has the wrong shape",
                        expected=str(t),
                        got=list(shape),
                        where=where,
                    )
            elif len(d.terms) == 1 and d.terms[0][1] == 1 and d.const == 0:
                sym = d.terms[0][0]
                if env.setdefault(sym, n) != n:
                    raise InputError(
                        f"input {name!r}: dim {sym} is {n} here but {env[sym]} elsewhere",
                        expected=str(t),
                        got=list(shape),
                        where=where,
                    )
            else:
                pending.append((name, d, n))
    for name, d, n in pending:
        unknown = [s for s, _ in d.terms if s not in env]
        if len(unknown) == 1:
            coef = dict(d.terms)[unknown[0]]
            rest = d.const + sum(c * env[s] for s, c in d.terms if s != unknown[0])
            env[unknown[0]] = (n - rest) // coef
        if len(unknown) <= 1 and d.evaluate(env) != n:
            raise InputError(
                f"input {name!r}: dim {d} should be {d.evaluate(env)}",
                got=n,
                where=where,
            )
    return env


def check_names(inputs: Mapping[str, object], feeds: Mapping[str, Any], where: str = "") -> None:
    """Feeds name exactly the model's inputs."""
    missing = [n for n in inputs if n not in feeds]
    if missing:
        raise InputError(
            f"missing inputs: {', '.join(missing)}", expected=", ".join(inputs), where=where
        )
    unknown = [n for n in feeds if n not in inputs]
    if unknown:
        raise InputError(
            f"unknown inputs: {', '.join(unknown)}", expected=", ".join(inputs), where=where
        )


def check_feeds(
    inputs: Mapping[str, TensorType],
    feeds: Mapping[str, Any],
    bounds: Mapping[str, int],
    where: str = "",
) -> None:
    """Refuse feeds the interpreter would refuse, or a backend would turn into garbage.

    Values that are not numpy arrays (or lists) are taken to be the session's own cache
    (ORT values, TVM tensors) and are not checked.
    """
    check_names(inputs, feeds, where)
    if BLOCK_TABLE in inputs:
        _check_pages(inputs, feeds, where)
    arrays = {n: v for n, v in feeds.items() if _is_host(v)}
    arrays = {n: np.asarray(v) for n, v in arrays.items()}
    for name, array in arrays.items():
        _check_dtype(name, array, inputs[name], where)
    env = bind_dims(inputs, {n: a.shape for n, a in arrays.items()}, where)
    _check_context(arrays, env, bounds, where)  # before positions: it says why they overflow
    for name, array in arrays.items():
        if array.size == 0 or inputs[name].dtype.is_float:
            continue
        low, high = int(array.min()), int(array.max())
        bound = bounds.get(name)
        if bound is not None and (low < 0 or high >= bound):
            raise InputError(
                f"input {name!r}: {_what(name)} out of range",
                expected=f"0..{bound - 1}",
                got=low if low < 0 else high,
                where=where,
            )
        if name in POSITION_INPUTS and low < 0:
            raise InputError(
                f"input {name!r}: position out of range", expected=">= 0", got=low, where=where
            )
        if name in MASK_INPUTS and (low < 0 or high > 1):
            raise InputError(
                f"input {name!r} must hold 0s and 1s",
                got=low if low < 0 else high,
                where=where,
            )


def _check_pages(inputs: Mapping[str, TensorType], feeds: Mapping[str, Any], where: str) -> None:
    """A paged cache's block table names pages of the pool, and each row's pages hold its
    cached and new tokens (a backend would read or write outside the pool otherwise)."""
    table, lens = feeds.get(BLOCK_TABLE), feeds.get(CACHE_LENS)
    if not _is_host(table) or not _is_host(lens):
        return
    table, lens = np.asarray(table), np.asarray(lens)
    pool = next((v for n, v in feeds.items() if n.startswith(PAST_PREFIX)), None)
    shape = getattr(pool, "shape", None)  # numpy, TVM tensor; an OrtValue's is a method
    shape = shape() if callable(shape) else shape
    pages = int(shape[0]) if shape is not None and len(shape) else None
    if table.size and (table.min() < 0 or (pages is not None and table.max() >= pages)):
        raise InputError(
            f"input {BLOCK_TABLE!r}: page out of range",
            expected=f"0..{(pages or 1) - 1}",
            got=int(table.min() if table.min() < 0 else table.max()),
            where=where,
        )
    block = next(t.shape[1] for n, t in inputs.items() if n.startswith(PAST_PREFIX))
    seq = np.shape(feeds["input_ids"])[1] if "input_ids" in feeds else 1
    if not isinstance(block, int) or table.ndim != 2:
        return  # the type checks that follow name these
    capacity = table.shape[1] * block
    if lens.size and (lens.min() < 0 or lens.max() + seq > capacity):
        raise InputError(
            f"input {CACHE_LENS!r}: cached plus new tokens do not fit the row's pages",
            expected=f"0 <= cache_lens and cache_lens + {seq} <= {capacity}",
            got=int(lens.min() if lens.min() < 0 else lens.max()),
            where=where,
        )


def _check_context(
    arrays: Mapping[str, np.ndarray],
    env: Mapping[str, int],
    bounds: Mapping[str, int],
    where: str,
) -> None:
    limit = context_limit(bounds)
    if limit is None:
        return
    total = None
    if "attention_mask" in arrays:
        total = arrays["attention_mask"].shape[-1]
    elif "past" in env and "seq" in env:
        total = env["past"] + env["seq"]
    if total is not None and total > limit:
        raise InputError(
            f"past + new tokens ({total}) exceed the model's context of {limit} positions "
            "(its learned position table)",
            expected=f"<= {limit}",
            got=total,
            where=where,
        )


def _what(name: str) -> str:
    return "position" if name in POSITION_INPUTS else "id"


def _is_host(value: Any) -> bool:
    return isinstance(value, (np.ndarray, list, tuple, int, np.integer, float, np.floating))


def _check_dtype(name: str, array: np.ndarray, t: TensorType, where: str) -> None:
    floats = t.dtype.is_float
    kind = array.dtype.kind
    if t.dtype is DType.f8e4m3:  # a quantized KV cache: its own dtype exactly
        fine, what = array.dtype == t.dtype.numpy, "float8_e4m3fn"
    elif floats:
        fine, what = kind == "f" or array.dtype == DType.bf16.numpy, "floats"
    else:
        fine, what = kind in "iub", "integers"
    if not fine:
        raise InputError(
            f"input {name!r} has the wrong dtype",
            expected=f"{what} ({t})",
            got=str(array.dtype),
            where=where,
        )


__all__ = [
    "bind_dims",
    "bounds_from_manifest",
    "check_feeds",
    "check_names",
    "context_limit",
    "index_bounds",
]
