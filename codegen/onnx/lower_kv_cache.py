"""The KV-cache storage ops lowered to ONNX: `kv_quantize` (quantize-kv), `ring_attention`
(sliding-window-cache) and `paged_attention` (paged-kv). Their attention goes through
lower_attention.py's `sdpa` with an explicit visibility mask (docs/onnxruntime.md §6 has what
ORT does with these caches).
"""

from __future__ import annotations

import numpy as np

from irgraph.codegen.lowering import static_dim
from irgraph.codegen.onnx.emitter import ONNX_DTYPES, Emitter
from irgraph.codegen.onnx.lower_attention import bnsh, sdpa
from irgraph.codegen.onnx.lowerings import lowers
from irgraph.dtypes import DType
from irgraph.ir import Node
from irgraph.ops.kv_quant import FLOOR, QMAX, reduce_axes


@lowers("kv_quantize")
def _kv_quantize(e: Emitter, node: Node, x: str, scale: str) -> list[str]:
    """New keys/values for a quantized cache (irgraph/ops/kv_quant.py): Round is half-to-even
    and Cast to float8 saturates, as the reference."""
    dtype, granularity = node.attrs["dtype"], node.attrs["granularity"]
    xt = bnsh(e, x)
    if scale:
        scale = e.op("Identity", [scale], [e.result(node, 1)])[0]
    else:
        amax = e.op1("ReduceMax", e.op1("Abs", xt), e.ints(*reduce_axes(granularity)), keepdims=1)
        ratio = e.op1("Div", amax, e.const(QMAX[dtype]))
        scale = e.op("Max", [ratio, e.const(float(FLOOR))], [e.result(node, 1)])[0]
    scaled = e.op1("Div", xt, scale)
    if dtype == "i8":
        rounded = e.op1("Clip", e.op1("Round", scaled), e.const(-127.0), e.const(127.0))
        return [e.op("Cast", [rounded], [e.result(node, 0)], to=ONNX_DTYPES[DType.i8])[0], scale]
    q = e.op("Cast", [scaled], [e.result(node, 0)], to=ONNX_DTYPES[DType(dtype)], saturate=1)
    return [q[0], scale]


def _attend(e: Emitter, node: Node, q: str, keys: str, values: str, allowed: str) -> str:
    """Output 0 of a cached-attention op whose keys come as BNSH [B, Hkv, T, D] and whose
    visibility is `allowed` [B, 1, S, T]: sdpa, then back to [B, S, Hq, Dv]."""
    qt, kt, vt = (node.arg(i).type for i in range(3))
    out = sdpa(
        e,
        bnsh(e, q),
        keys,
        values,
        hq=static_dim(qt.shape[2], node, "query heads"),
        hkv=static_dim(kt.shape[2], node, "kv heads"),
        head_dim=static_dim(qt.shape[3], node, "head_dim"),
        v_dim=static_dim(vt.shape[3], node, "v head_dim"),
        scale=node.attrs["scale"],
        softcap=node.attrs["softcap"],
        allowed=allowed,
    )
    return e.op("Transpose", [out], [e.result(node, 0)], perm=[0, 2, 1, 3])[0]


@lowers("ring_attention")
def _ring_attention(
    e: Emitter, node: Node, q: str, k: str, v: str, past_k: str, past_v: str, key_mask: str
) -> list[str]:
    """irgraph/ops/ring_attention.py in ONNX ops: key positions from the mask's width, the
    visibility rules by position, and the new ring as a Gather of [slots, new tokens]."""
    window = node.attrs["window"]
    i64 = np.int64
    seq = e.scalar_dim(q, 1)
    t = e.op1("Sub", e.scalar_dim(key_mask, 1), seq)  # tokens before this call
    slot = e.const(np.arange(window, dtype=i64))
    w = e.const(window, i64)
    t1 = e.op1("Sub", t, e.const(1, i64))
    slots = e.op1("Sub", t1, e.op1("Mod", e.op1("Sub", t1, slot), w))  # Mod: divisor's sign
    new_pos = e.op1("Add", t, e.op1("Range", e.const(0, i64), seq, e.const(1, i64)))
    kpos = e.op1("Unsqueeze", e.op1("Concat", slots, new_pos, axis=0), e.ints(0))  # (1, W+S)
    qpos = e.op1("Unsqueeze", new_pos, e.ints(1))  # (S, 1)
    rule = e.op1(
        "And",
        e.op1(
            "And", e.op1("GreaterOrEqual", kpos, e.const(0, i64)), e.op1("LessOrEqual", kpos, qpos)
        ),
        e.op1("Less", e.op1("Sub", qpos, kpos), w),
    )  # (S, W+S)
    flat = e.op1("Squeeze", kpos, e.ints(0))
    real = e.op1(
        "Cast", e.op1("Gather", key_mask, e.op1("Max", flat, e.const(0, i64)), axis=1), to=9
    )  # (B, W+S)
    allowed = e.op1(
        "And", e.op1("Unsqueeze", rule, e.ints(0, 1)), e.op1("Unsqueeze", real, e.ints(1, 2))
    )  # (B, 1, S, W+S)
    k_all = e.op1("Concat", past_k, bnsh(e, k), axis=2)
    v_all = e.op1("Concat", past_v, bnsh(e, v), axis=2)
    first = e.op1("Mod", e.op1("Sub", slot, t), w)  # the first new token landing in each slot
    last = e.op1(
        "Add",
        first,
        e.op1("Mul", w, e.op1("Div", e.op1("Sub", e.op1("Sub", seq, e.const(1, i64)), first), w)),
    )  # the last one (Div truncates; its result is used only where first < seq, so >= 0)
    sources = e.op1("Where", e.op1("Less", first, seq), e.op1("Add", w, last), slot)
    return [
        _attend(e, node, q, k_all, v_all, allowed),
        e.op("Gather", [k_all, sources], [e.result(node, 1)], axis=2)[0],
        e.op("Gather", [v_all, sources], [e.result(node, 2)], axis=2)[0],
    ]


@lowers("paged_attention")
def _paged_attention(
    e: Emitter,
    node: Node,
    q: str,
    k: str,
    v: str,
    key_pages: str,
    value_pages: str,
    block_table: str,
    cache_lens: str,
) -> list[str]:
    """irgraph/ops/paged_attention.py: ScatterND writes the new tokens into the pool seen as a
    token table, Gather reads each row's pages in table order, and the causal rule masks by
    each row's length."""
    kt, vt = node.arg(1).type, node.arg(2).type
    hkv, d = static_dim(kt.shape[2], node, "kv heads"), static_dim(kt.shape[3], node, "head_dim")
    dv = static_dim(vt.shape[3], node, "v head_dim")
    block = static_dim(node.arg(3).type.shape[1], node, "block")
    i64 = np.int64
    lens = e.op1("Cast", cache_lens, to=ONNX_DTYPES[DType.i64])
    table = e.op1("Cast", block_table, to=ONNX_DTYPES[DType.i64])
    seq = e.scalar_dim(q, 1)
    pos = e.op1(
        "Add",
        e.op1("Unsqueeze", lens, e.ints(1)),
        e.op1("Range", e.const(0, i64), seq, e.const(1, i64)),
    )  # (B, S)
    blk = e.const(block, i64)
    page = e.op1("GatherElements", table, e.op1("Div", pos, blk), axis=1)
    slot = e.op1(
        "Reshape", e.op1("Add", e.op1("Mul", page, blk), e.op1("Mod", pos, blk)), e.ints(-1, 1)
    )

    def write(pool: str, new: str, heads: int, width: int, out: int) -> str:
        flat = e.op1("Reshape", pool, e.ints(-1, heads, width))  # (pages·block, H, D)
        rows = e.op1("ScatterND", flat, slot, e.op1("Reshape", new, e.ints(-1, heads, width)))
        return e.op("Reshape", [rows, e.op1("Shape", pool)], [e.result(node, out)])[0]

    def read(pool: str, heads: int, width: int) -> str:
        rows = e.op1("Gather", pool, table, axis=0)  # (B, blocks, block, H, D)
        return bnsh(e, e.op1("Reshape", rows, e.ints(0, -1, heads, width)))  # (B, H, T, D)

    present_k, present_v = write(key_pages, k, hkv, d, 1), write(value_pages, v, hkv, dv, 2)
    keys, values = read(present_k, hkv, d), read(present_v, hkv, dv)
    slots = e.op1("Range", e.const(0, i64), e.scalar_dim(keys, 2), e.const(1, i64))  # (T,)
    allowed = e.op1(
        "Unsqueeze", e.op1("LessOrEqual", slots, e.op1("Unsqueeze", pos, e.ints(2))), e.ints(1)
    )  # (B, 1, S, T)
    return [_attend(e, node, q, keys, values, allowed), present_k, present_v]
