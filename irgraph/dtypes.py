"""Element types of irgraph tensors and their numpy counterparts.

`i4` is packed signed 4-bit (two values per byte, low nibble first); the
interpreter never computes in it, it only stores quantized weights.
"""

from __future__ import annotations

import builtins
import enum

import ml_dtypes
import numpy as np

from irgraph.errors import IRError


class DType(enum.Enum):
    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    i64 = "i64"
    i32 = "i32"
    i8 = "i8"
    u8 = "u8"
    f8e4m3 = "f8e4m3"  # float8 e4m3fn (no infinities): quantized KV caches only
    i4 = "i4"
    bool = "bool"

    def __str__(self) -> str:
        return self.value

    @property
    def is_float(self) -> builtins.bool:  # `bool` is a member name in this class body
        return self in (DType.f32, DType.f16, DType.bf16)

    @property
    def is_packed(self) -> builtins.bool:
        """Packed below a byte (i4): stored weights only, never a dtype ops or backends compute in.

        Every other dtype is a compute dtype: each backend's dtype map covers all of them.
        """
        return self is DType.i4

    @property
    def bits(self) -> int:
        return _BITS[self]

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype that holds one element (i4 is held unpacked in int8)."""
        return np.dtype(_NUMPY[self])

    @staticmethod
    def parse(text: str) -> DType:
        try:
            return DType(text)
        except ValueError:
            raise IRError(
                f"unknown dtype {text!r}", expected=" | ".join(d.value for d in DType)
            ) from None

    @staticmethod
    def from_numpy(dtype: np.dtype) -> DType:
        for dt, np_type in _NUMPY.items():
            if dt is not DType.i4 and np.dtype(np_type) == np.dtype(dtype):
                return dt
        raise IRError(f"numpy dtype {dtype} has no irgraph dtype")


_BITS = {
    DType.f32: 32,
    DType.f16: 16,
    DType.bf16: 16,
    DType.i64: 64,
    DType.i32: 32,
    DType.i8: 8,
    DType.u8: 8,
    DType.f8e4m3: 8,
    DType.i4: 4,
    DType.bool: 8,
}
_NUMPY = {
    DType.f32: np.float32,
    DType.f16: np.float16,
    DType.bf16: ml_dtypes.bfloat16,
    DType.i64: np.int64,
    DType.i32: np.int32,
    DType.i8: np.int8,
    DType.u8: np.uint8,
    DType.f8e4m3: ml_dtypes.float8_e4m3fn,
    DType.i4: np.int8,
    DType.bool: np.bool_,
}
