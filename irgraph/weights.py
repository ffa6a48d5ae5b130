"""Named weights, memory-mapped from safetensors files.

safetensors' own numpy loader copies every tensor into memory; irgraph instead
reads the (tiny, JSON) header and maps each tensor straight from the file with
`numpy.memmap`, so a 100 GB checkpoint opens instantly and pages in on use.
The format is the same (https://github.com/huggingface/safetensors): 8-byte
little-endian header length, a JSON header, then raw little-endian data.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from irgraph.errors import ConfigError
from irgraph.progress import Progress, no_progress

_TO_NUMPY = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_FROM_NUMPY = {np.dtype(v): k for k, v in _TO_NUMPY.items()}


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """(header dict, byte offset where tensor data starts) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ConfigError("not a safetensors file (shorter than 8 bytes)", where=str(path))
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise ConfigError(
                "not a safetensors file (implausible header length)", got=n, where=str(path)
            )
        size = os.fstat(f.fileno()).st_size
        if 8 + n > size:
            raise ConfigError(
                "safetensors header runs past the end of the file (truncated?)",
                expected=f"header length <= {size - 8}",
                got=n,
                where=str(path),
            )
        try:
            header = json.loads(f.read(n))
        except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, or nested past the limit
            raise ConfigError(f"safetensors header is not JSON: {e}", where=str(path)) from None
    if not isinstance(header, dict):
        raise ConfigError(
            "safetensors header is not a JSON object", got=type(header).__name__, where=str(path)
        )
    return header, 8 + n


class WeightStore(Mapping[str, np.ndarray]):
    """A read-only mapping name -> array; arrays from files are memory-mapped."""

    def __init__(self, arrays: Mapping[str, np.ndarray] | None = None):
        self._arrays: dict[str, np.ndarray] = dict(arrays or {})
        self._lazy: dict[str, tuple[Path, str, tuple[int, ...], int]] = {}
        self._casts: dict[str, np.dtype] = {}

    @staticmethod
    def from_arrays(arrays: Mapping[str, np.ndarray]) -> WeightStore:
        return WeightStore({k: np.asarray(v) for k, v in arrays.items()})

    @staticmethod
    def open(*paths: str | os.PathLike[str]) -> WeightStore:
        """Map the tensors of one or more (shard) files; names must not repeat across shards."""
        store = WeightStore()
        for p in map(Path, paths):
            header, start = read_header(p)
            size = p.stat().st_size
            spans: list[tuple[int, int, str]] = []
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                if name in store._lazy:
                    raise ConfigError(f"tensor {name!r} appears in two shards", where=str(p))
                dtype, shape, begin, end = _entry(p, name, info)
                # Checked here, not at first use: a bad offset would otherwise surface later as
                # numpy's mmap error, far from the file that caused it.
                nbytes = math.prod(shape) * np.dtype(_TO_NUMPY[dtype]).itemsize
                if end - begin != nbytes:
                    raise ConfigError(
                        f"tensor {name!r}: data_offsets span {end - begin} bytes",
                        expected=f"{nbytes} for {dtype}{list(shape)}",
                        got=[begin, end],
                        where=str(p),
                    )
                if start + end > size:
                    raise ConfigError(
                        f"tensor {name!r} lies beyond the end of the file",
                        expected=f"<= {size}",
                        got=start + end,
                        where=str(p),
                    )
                store._lazy[name] = (p, dtype, shape, start + begin)
                if end > begin:
                    spans.append((begin, end, name))
            _check_disjoint(spans, p)
        return store

    def cast(self, name: str, dtype: np.dtype) -> None:
        """Read `name` as `dtype` from now on (a copy per read; `load(..., cast_weights=True)`)."""
        self._casts[name] = np.dtype(dtype)

    def __getitem__(self, name: str) -> np.ndarray:
        array = self._read(name)
        cast = self._casts.get(name)
        return array if cast is None else array.astype(cast)

    def _read(self, name: str) -> np.ndarray:
        if name in self._arrays:
            return self._arrays[name]
        if name not in self._lazy:
            raise KeyError(name)
        path, dtype, shape, offset = self._lazy[name]
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype=_TO_NUMPY[dtype])
        return np.memmap(path, dtype=_TO_NUMPY[dtype], mode="r", offset=offset, shape=shape)

    def __iter__(self) -> Iterator[str]:
        yield from self._arrays
        yield from (k for k in self._lazy if k not in self._arrays)

    def __len__(self) -> int:
        return len(set(self._arrays) | set(self._lazy))

    def __contains__(self, name: object) -> bool:
        return name in self._arrays or name in self._lazy

    def shape_dtype(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype without touching the data."""
        if name in self._arrays:
            a = self._arrays[name]
            shape, stored = a.shape, a.dtype
        else:
            _, dtype, shape, _ = self._lazy[name]
            stored = np.dtype(_TO_NUMPY[dtype])
        return shape, self._casts.get(name, stored)


def _check_disjoint(spans: list[tuple[int, int, str]], path: Path) -> None:
    """ConfigError if two tensors' byte spans overlap: one write would change the other."""
    spans.sort()
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
        if begin < end:
            raise ConfigError(
                f"tensors {first!r} and {second!r} overlap in the file",
                expected=f"{second!r} to start at or after byte {end}",
                got=begin,
                where=str(path),
            )


def _entry(path: Path, name: str, info: Any) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry; ConfigError naming the file if malformed."""

    def ints(value: Any) -> bool:  # JSON integers only: not 2.5, true, "3" or Infinity
        return isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )

    ok = isinstance(info, dict) and isinstance(info.get("dtype"), str)
    ok = ok and ints(info.get("shape")) and ints(info.get("data_offsets"))
    if not ok or len(info["data_offsets"]) != 2:
        raise ConfigError(
            f"tensor {name!r} has a malformed entry",
            expected='{"dtype", "shape", "data_offsets": [begin, end]}',
            got=repr(info)[:200],
            where=str(path),
        )
    dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
    if dtype not in _TO_NUMPY:
        raise ConfigError(
            f"tensor {name!r} has unsupported dtype",
            expected=sorted(_TO_NUMPY),
            got=dtype,
            where=str(path),
        )
    if begin < 0 or end < begin or min(shape, default=0) < 0:
        raise ConfigError(
            f"tensor {name!r} has negative data_offsets or shape",
            got=repr(info)[:200],
            where=str(path),
        )
    return dtype, shape, begin, end


def save_safetensors(
    arrays: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
    names: Iterable[str] | None = None,
    progress: Progress = no_progress,
) -> None:
    """Write arrays (those in `names`, default all) as one safetensors file, tensor by tensor.

    `progress` hears of every tensor written.

    A WeightStore's shapes and dtypes come from `shape_dtype` and each tensor is
    fetched only when it is written, so a store that computes tensors on access
    (an imported checkpoint's transformed weights) never holds them all at once.
    """
    names = list(arrays if names is None else names)
    header: dict[str, Any] = {}
    offset = 0
    for name in names:
        shape, dtype = (
            arrays.shape_dtype(name)
            if isinstance(arrays, WeightStore)
            else (arrays[name].shape, arrays[name].dtype)
        )
        dtype = np.dtype(dtype)
        if dtype not in _FROM_NUMPY:
            raise ConfigError(f"cannot store {name!r} as safetensors", got=str(dtype))
        nbytes = int(np.prod(shape)) * dtype.itemsize
        header[name] = {
            "dtype": _FROM_NUMPY[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    if metadata:
        header["__metadata__"] = dict(metadata)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # align data to 8 bytes, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        what = f"writing {Path(path).name}"
        for i, name in enumerate(names):
            progress(i, len(names), what)
            a = np.asarray(arrays[name])
            if (
                a.shape != tuple(header[name]["shape"])
                or _FROM_NUMPY.get(a.dtype) != header[name]["dtype"]
            ):
                raise ConfigError(
                    f"tensor {name!r} differs from its declared shape/dtype",
                    expected=header[name],
                    got=(a.shape, str(a.dtype)),
                    where=str(path),
                )
            np.ascontiguousarray(a).tofile(f)  # little-endian hosts only (x86-64, aarch64)
        progress(len(names), len(names), what)
