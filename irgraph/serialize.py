"""A graph on disk: a folder with `graph.irg` (the text form) and `weights.safetensors`.

Saving writes into a temporary sibling folder and renames it into place, so a
failure never leaves a half-written graph. Loading memory-maps the weights.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from irgraph.atomic import atomic_folder
from irgraph.dtypes import DType
from irgraph.errors import ConfigError, IRError
from irgraph.ir import Graph
from irgraph.parser import parse
from irgraph.progress import Progress, no_progress
from irgraph.quant import QuantSpec
from irgraph.weights import WeightStore, save_safetensors

GRAPH_FILE = "graph.irg"
WEIGHTS_FILE = "weights.safetensors"


def is_graph_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / GRAPH_FILE).is_file()


def save(
    graph: Graph,
    path: str | os.PathLike[str],
    *,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    progress: Progress = no_progress,
) -> Path:
    """Write `graph` to folder `path` atomically; `extra_files` (name -> source) are copied in.

    `progress` hears of every weight written.

    A non-empty `path` is refused unless `overwrite=True`, and even then replaced only if
    it is an irgraph output; a folder holding `inputs` (paths the caller read the graph
    from) or `extra_files` is never replaced (`irgraph.output`).
    """
    target = Path(path)
    sources = [*inputs, *(extra_files or {}).values()]
    with atomic_folder(target, overwrite=overwrite, inputs=sources) as tmp:
        (tmp / GRAPH_FILE).write_text(str(graph))
        if graph.weights is not None:
            save_safetensors(
                graph.weights, tmp / WEIGHTS_FILE, names=graph.stored_names(), progress=progress
            )
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
    return target


def load(path: str | os.PathLike[str], *, cast_weights: bool = False) -> Graph:
    """Read a saved graph folder (weights memory-mapped; absent for structure-only graphs).

    Every stored tensor must be one the graph declares, in the declared dtype: a weight stored
    as int64 or f16 where the graph says f32 is an error, unless `cast_weights` (the CLI's
    `--cast-weights`) asks to cast it on read (numpy's astype, a copy per read; never from
    a float to an integer dtype).
    """
    folder = Path(path)
    text_file = folder / GRAPH_FILE
    if not text_file.is_file():
        raise ConfigError(f"not an irgraph graph folder: no {GRAPH_FILE}", where=str(folder))
    try:
        graph = parse(text_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise IRError(
            f"not UTF-8 text: byte {e.object[e.start]:#04x} at offset {e.start}",
            where=str(text_file),
        ) from None
    except IRError as e:
        raise IRError(
            e.message,
            expected=e.expected,
            got=e.got,
            where=f"{text_file}: {e.where}" if e.where else str(text_file),
        ) from None
    weights_file = folder / WEIGHTS_FILE
    if weights_file.is_file():
        graph.weights = WeightStore.open(weights_file)
        for name, v in graph.params.items():
            if name not in graph.weights:
                raise ConfigError(f"weight {name!r} missing", where=str(weights_file))
            if v.type.quant is not None:
                _check_quantized(graph.weights, name, v.type.quant, v.type.shape, weights_file)
                continue
            shape, _ = graph.weights.shape_dtype(name)
            if tuple(shape) != v.type.shape and v.type.dtype.bits >= 8:
                raise ConfigError(
                    f"weight {name!r} has the wrong shape",
                    expected=v.type.shape,
                    got=shape,
                    where=str(weights_file),
                )
            _check_dtype(graph.weights, name, v.type.dtype, cast_weights, weights_file)
        unused = sorted(set(graph.weights) - set(graph.stored_names()))
        if unused:
            raise ConfigError(
                f"{len(unused)} stored tensor(s) are not parameters of the graph: "
                + ", ".join(map(repr, unused[:5]))
                + (", ..." if len(unused) > 5 else ""),
                where=str(weights_file),
            )
    return graph


def _check_dtype(store: WeightStore, name: str, declared: DType, cast: bool, where: Path) -> None:
    """ConfigError unless `name` is stored as the graph declares it (or `cast` may convert it)."""
    if declared.is_packed:
        return
    _, stored = store.shape_dtype(name)
    want = declared.numpy
    if np.dtype(stored) == want:
        return
    lossy = np.dtype(stored) in _FLOATS and not declared.is_float
    if cast and not lossy:
        store.cast(name, want)
        return
    hint = "" if lossy else " (pass --cast-weights, or cast_weights=True, to cast it on load)"
    raise ConfigError(
        f"weight {name!r} is stored in another dtype than the graph declares{hint}",
        expected=str(declared),
        got=str(np.dtype(stored)),
        where=str(where),
    )


_FLOATS = {DType.f32.numpy, DType.f16.numpy, DType.bf16.numpy, np.dtype(np.float64)}


def _check_quantized(
    store: WeightStore, name: str, spec: QuantSpec, shape: tuple[Any, ...], where: Path
) -> None:
    """ConfigError unless the data, scales (and zero points) of `name` are stored as `spec` says."""
    for suffix, (want, dtype) in spec.stored(tuple(int(d) for d in shape)).items():
        if name + suffix not in store:
            raise ConfigError(f"weight {name + suffix!r} missing", where=str(where))
        got, got_dtype = store.shape_dtype(name + suffix)
        if tuple(got) != want or np.dtype(got_dtype) != dtype:
            raise ConfigError(
                f"quantized weight {name + suffix!r} is stored wrongly",
                expected=f"{dtype}{list(want)}",
                got=f"{np.dtype(got_dtype)}{list(got)}",
                where=str(where),
            )


def load_with_weights(path: str | os.PathLike[str], *, cast_weights: bool = False) -> Graph:
    """load(path) for running, compiling or training: a graph without weights is refused.

    A saved graph without weights.safetensors is structure only (as a published-size
    zoo model is saved) or has lost its weights file; either way the error names the file.
    """
    graph = load(path, cast_weights=cast_weights)
    if graph.weights is None and graph.params:
        raise ConfigError(
            f"{WEIGHTS_FILE} is missing: the graph is structure only and cannot run",
            where=str(Path(path)),
        )
    return graph
