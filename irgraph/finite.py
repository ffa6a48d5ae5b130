"""NaN and Inf in weights: found before they turn every logit into NaN.

`run`, `generate` and `compile` check every floating-point tensor of a graph once (unless
`--allow-nonfinite`): a corrupt or badly converted checkpoint fails with the tensor's name
instead of producing NaN logits, or an artifact that does. Memory-mapped tensors are read in
chunks of `CHUNK` elements, so the check needs a bounded scratch buffer and one pass over the
bytes (about as fast as the disk or page cache delivers them; docs in README "Weights").
"""

from __future__ import annotations

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import ConfigError
from irgraph.ir import Graph

CHUNK = 1 << 22  # elements per np.isfinite call: 16 MiB of f32 read, 4 MiB of bool scratch
_FLOATS = {DType.f32.numpy, DType.f16.numpy, DType.bf16.numpy, np.dtype(np.float64)}


# 16-bit floats: NaN/Inf have every exponent bit set. Testing the bits of a uint16 view is
# about 3x faster than np.isfinite, which converts f16/bf16 to f32 first.
_EXPONENT_BITS = {DType.f16.numpy: 0x7C00, DType.bf16.numpy: 0x7F80}


def first_nonfinite(array: np.ndarray) -> int | None:
    """Flat index of the first NaN or Inf in `array`, None if all values are finite."""
    flat = np.asarray(array).reshape(-1)
    bits = _EXPONENT_BITS.get(np.dtype(flat.dtype))
    if bits is not None:
        flat = flat.view(np.uint16)
    for start in range(0, flat.size, CHUNK):
        chunk = flat[start : start + CHUNK]
        ok = np.isfinite(chunk) if bits is None else (chunk & bits) != bits
        if not ok.all():
            return start + int(np.argmin(ok))
    return None


def check_finite(graph: Graph, where: str = "") -> None:
    """ConfigError naming the first stored float tensor of `graph` that holds a NaN or Inf."""
    if graph.weights is None:
        return
    for name in graph.stored_names():
        array = graph.weights[name]
        if np.dtype(array.dtype) not in _FLOATS:
            continue
        index = first_nonfinite(array)
        if index is not None:
            value = np.asarray(array).reshape(-1)[index]
            raise ConfigError(
                f"weight {name!r} holds {value} at flat index {index} "
                "(pass --allow-nonfinite to use it anyway)",
                expected="finite values",
                got=str(value),
                where=where or graph.name,
            )


__all__ = ["CHUNK", "check_finite", "first_nonfinite"]
