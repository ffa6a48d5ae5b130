"""int4 x int8 linear kernels on AVX-512 VNNI: llama.cpp's q4_0 x q8_0 scheme in TVM.

`--option activations=int8` on tvm-llvm: a linear whose weight is `i4<gG,sym>` (G a multiple
of 32, K too) quantizes its activations per token and per 32 values to int8 (scale max|x|/127,
round to nearest even), as llama.cpp's q8_0 and ORT's accuracy_level 4 do, and multiplies them
with the 4-bit weights by `vpdpbusd` (u8 x s8 -> s32, four products per lane per instruction):

    weight, packed once at load ("vnni16", runtimes/tvm.py `pack_weight`): i32 [N/16, K/8, 16];
        lane j of word (no, c) holds 8 values of row no·16 + j, q + 8 in [0, 15]: byte t has
        k = 8c + t in its low nibble and k = 8c + 4 + t in its high one
    per 32 values: 4 words -> 8 vpdpbusd of (nibbles masked / shifted) x (4 int8 activations
        broadcast to all lanes), then  acc += s_w · d_x · (Σ (q+8)·x8 - 8 · Σ x8)

The integer sum is exact; what differs from the interpreter is the activation rounding (the
error is measured and reported, not bounded at 1e-4). Ideas from llama.cpp's
ggml_vec_dot_q4_0_q8_0 (the +8 bias taken off per block with Σx8, one float scale per block)
and T-MAC (weights re-laid-out once at load so the inner loop is unit-stride SIMD loads).
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from irgraph.quant import QuantSpec

NB = 16  # output rows per block: the 16 int32 lanes of a 512-bit register
QK = 32  # activation block (llama.cpp's q8_0)
_OPAQUE = 8  # relax OpPatternKind.kOpaque
LAYOUT = "vnni16"


def takes(spec: QuantSpec, n: int, k: int) -> bool:
    """Whether a [N, K] weight of `spec` runs on these kernels."""
    g = spec.group_size(k)
    return (
        spec.storage.name == "i4"
        and spec.sym
        and spec.bits == 4
        and k % QK == 0
        and g % QK == 0
        and n % NB == 0
    )


def vnni_kernel(n: int, k: int, spec: QuantSpec) -> tirx.PrimFunc:
    """y [M, N] = x [M, K] · W [N, K]ᵀ: x quantized to int8 quads in a scratch buffer, then
    the vnni16 weight blocks, in parallel, each serving every row from cache."""
    blocks, qblocks = n // NB, k // QK
    per_group = spec.group_size(k) // QK  # activation blocks per weight group
    groups = spec.blocks(k)
    s_dtype = str(spec.scale_dtype.numpy)
    dot = T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512")

    @T.macro(hygienic=True)
    def quantize(x, xq, xd, xs, m):  # type: ignore[no-untyped-def]  # TVMScript macro
        """Per row and 32 values: d = max|x|/127, q = round(x/d) as 4 int8 per i32, Σq."""
        for r in T.parallel(m):
            amax = T.decl_buffer((1,), "float32", scope="local")
            total = T.decl_buffer((1,), "int32", scope="local")
            word = T.decl_buffer((1,), "int32", scope="local")
            for b in range(qblocks):
                amax[0] = T.float32(0)
                for t in range(QK):
                    amax[0] = T.max(amax[0], T.fabs(x[r, b * QK + t]))
                total[0] = 0
                for c in range(QK // 4):
                    word[0] = 0
                    for t in T.unroll(4):
                        v = T.Cast(
                            "int32",
                            T.round(
                                x[r, b * QK + c * 4 + t]
                                * T.if_then_else(amax[0] > 0, T.float32(127) / amax[0], 0)
                            ),
                        )
                        total[0] = total[0] + v
                        word[0] = T.bitwise_or(word[0], T.shift_left(T.bitwise_and(v, 255), t * 8))
                    xq[r * (k // 4) + b * (QK // 4) + c] = word[0]
                xd[r * qblocks + b] = amax[0] / T.float32(127)
                xs[r * qblocks + b] = total[0]

    @T.prim_func(private=True)
    def kernel(x_h: T.handle, w_h: T.handle, ws_h: T.handle, y_h: T.handle) -> None:
        T.func_attr({"tirx.noalias": True})
        m = T.int64()
        x = T.match_buffer(x_h, (m, k), "float32")
        w = T.match_buffer(w_h, (blocks, k // 8, NB), "int32")
        ws = T.match_buffer(ws_h, (blocks, groups, NB), s_dtype)
        y = T.match_buffer(y_h, (m, n), "float32")
        xq = T.decl_buffer((m * (k // 4),), "int32")
        xd = T.decl_buffer((m * qblocks,), "float32")
        xs = T.decl_buffer((m * qblocks,), "int32")
        quantize(x, xq, xd, xs, m)
        for no in T.parallel(blocks):
            acc = T.decl_buffer((NB,), "float32", scope="local")
            iacc = T.decl_buffer((NB,), "int32", scope="local")
            for r in range(m):
                acc[T.ramp(0, 1, NB)] = T.broadcast(T.float32(0), NB)
                for b in range(qblocks):
                    iacc[T.ramp(0, 1, NB)] = T.broadcast(T.int32(0), NB)
                    for c in T.unroll(QK // 8):
                        v = w[no, b * (QK // 8) + c, T.ramp(0, 1, NB)]
                        at = r * (k // 4) + b * (QK // 4) + c * 2
                        iacc[T.ramp(0, 1, NB)] = T.call_llvm_pure_intrin(
                            "int32x16",
                            dot,
                            iacc[T.ramp(0, 1, NB)],
                            T.reinterpret(
                                "int8x64", T.bitwise_and(v, T.broadcast(T.int32(0x0F0F0F0F), NB))
                            ),
                            T.reinterpret("int8x64", T.broadcast(xq[at], NB)),
                        )
                        iacc[T.ramp(0, 1, NB)] = T.call_llvm_pure_intrin(
                            "int32x16",
                            dot,
                            iacc[T.ramp(0, 1, NB)],
                            T.reinterpret(
                                "int8x64",
                                T.bitwise_and(
                                    T.shift_right(v, T.broadcast(T.int32(4), NB)),
                                    T.broadcast(T.int32(0x0F0F0F0F), NB),
                                ),
                            ),
                            T.reinterpret("int8x64", T.broadcast(xq[at + 1], NB)),
                        )
                    acc[T.ramp(0, 1, NB)] = acc[T.ramp(0, 1, NB)] + T.Cast(
                        "float32x16", ws[no, b // per_group, T.ramp(0, 1, NB)]
                    ) * T.broadcast(xd[r * qblocks + b], NB) * T.Cast(
                        "float32x16",
                        iacc[T.ramp(0, 1, NB)] - T.broadcast(xs[r * qblocks + b] * 8, NB),
                    )
                y[r, T.ramp(no * NB, 1, NB)] = acc[T.ramp(0, 1, NB)]

    return kernel.with_attr("op_pattern", _OPAQUE)


__all__ = ["LAYOUT", "NB", "QK", "takes", "vnni_kernel"]
