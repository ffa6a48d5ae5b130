"""Open a GGUF file for import: gguf-py's reader, with every malformation one typed error.

gguf-py's `GGUFReader` reads past the end of a truncated file as short arrays and fails later
with an IndexError or a reshape error, and raises a bare ValueError for an unknown GGML type.
`open_gguf` reads through a subclass that checks each read against the file's end and each
tensor's type and extent before gguf-py builds it, so the ConfigError names the file, the byte
offset or the tensor at fault. The file is memory-mapped; nothing is read twice.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irgraph.errors import ConfigError


class _Truncated(Exception):
    def __init__(self, offset: int, wanted: int):
        self.offset, self.wanted = offset, wanted


def _checked_reader(gguf: Any, where: str) -> type:
    class Checked(gguf.GGUFReader):  # checks first, then gguf-py builds
        def _get(self, offset: int, dtype: Any, count: int = 1, override_order: Any = None) -> Any:
            arr = super()._get(offset, dtype, count, override_order)
            if len(arr) < int(count):
                raise _Truncated(offset, int(count) * np.dtype(dtype).itemsize)
            return arr

        def _build_tensors(self, start_offs: int, fields: list[Any]) -> None:
            size = len(self.data)
            for field in fields:
                _, name_data, _, dims, raw_dtype, offset = field.parts
                name = bytes(name_data).decode("utf-8", "replace")
                try:
                    ggml = gguf.GGMLQuantizationType(int(raw_dtype[0]))
                except ValueError:
                    raise ConfigError(
                        f"tensor {name!r} has an unknown GGML type {int(raw_dtype[0])}",
                        expected="a GGMLQuantizationType gguf-py knows (F32, F16, Q8_0, Q4_K, ...)",
                        where=where,
                    ) from None
                block, type_size = gguf.GGML_QUANT_SIZES[ggml]
                count = math.prod(int(d) for d in dims)
                if count % block:
                    raise ConfigError(
                        f"tensor {name!r} of type {ggml.name} has {count} values, not whole "
                        f"{block}-value blocks",
                        where=where,
                    )
                end = start_offs + int(offset[0]) + count // block * type_size
                if end > size:
                    raise ConfigError(
                        f"truncated: tensor {name!r} ends at byte {end}, past the end of the "
                        f"file ({size} bytes)",
                        where=where,
                    )
            super()._build_tensors(start_offs, fields)

    return Checked


@dataclass
class GgufFile:
    """The metadata (key -> Python value) and tensors (name -> gguf ReaderTensor) of a file."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, Any]

    @property
    def architecture(self) -> str:
        arch = self.meta.get("general.architecture")
        if not isinstance(arch, str):
            raise ConfigError("no general.architecture key", where=str(self.path))
        return arch


def import_gguf_package() -> Any:
    try:
        import gguf
    except ImportError:
        raise ConfigError(
            "import-gguf needs the gguf package: pip install 'irgraph[llama]'"
        ) from None
    return gguf


def open_gguf(path: str | os.PathLike[str]) -> GgufFile:
    """Read the header of the GGUF file `path` (ConfigError for anything malformed)."""
    gguf = import_gguf_package()
    where = str(path)
    p = Path(path)
    if p.is_dir():
        raise ConfigError("is a folder; import-gguf reads one .gguf file", where=where)
    if p.stat().st_size == 0:
        raise ConfigError("empty file; not a GGUF file", where=where)
    try:
        reader = _checked_reader(gguf, where)(p)
    except _Truncated as e:
        raise ConfigError(
            f"truncated: the header needs {e.wanted} bytes at offset {e.offset}, past the end "
            f"of the file ({p.stat().st_size} bytes)",
            where=where,
        ) from None
    except ValueError as e:
        if "magic" in str(e):
            raise ConfigError("not a GGUF file (no GGUF magic at its start)", where=where) from None
        raise ConfigError(f"malformed GGUF header: {e}", where=where) from None
    except (KeyError, IndexError, OverflowError, TypeError) as e:
        raise ConfigError(f"malformed GGUF header: {e}", where=where) from None
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            meta[key] = field.contents()
            if field.types == [gguf.GGUFValueType.FLOAT32]:
                # the shortest decimal of the float32 (what the writer's 1e-5 was, not 9.99e-6)
                meta[key] = float(str(np.float32(meta[key])))
        except (UnicodeDecodeError, ValueError, IndexError) as e:
            raise ConfigError(f"metadata key {key!r} cannot be read: {e}", where=where) from None
    return GgufFile(p, meta, {t.name: t for t in reader.tensors})


__all__ = ["GgufFile", "import_gguf_package", "open_gguf"]
