"""Attention, rotary, ALiBi and T5 relative bias lowered to ONNX
(latent attention arrives absorbed: codegen/lowering.py `legalize`, passes/absorb_latent.py).

Attention picks the strongest form that can express the IR node exactly:
  ort flavour       GroupQueryAttention (com.microsoft) for causal self-attention
                    with a KV cache and no bias / prefix mask
  portable flavour  Attention-23 when there is no key mask, window, stride or prefix
  otherwise         a decomposition (MatMul, masks built from Range, Softmax)
The decomposition follows `irgraph.ops.attention.sdpa`: grouped heads share
their KV head by a reshape (no K/V copies), and a query with no visible key
outputs zeros.

GroupQueryAttention derives each row's length from the attention mask, so it
assumes right (or no) padding; the manifest records this (`left_padding`) and
the runtime then feeds padded batches row by row. When q and k come from one
full-width rotary setting, GQA also rotates them (`do_rotary`), fed the rotary
lowering's per-token cos/sin rows and row indices instead of a position table,
so any `position_ids` stay exact; when q/k/v come from one fused projection,
GQA takes it packed. (Its rotary wants head_size % 16 == 0, attention % 8.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.codegen.lowering import static_dim
from irgraph.codegen.onnx.emitter import Emitter
from irgraph.codegen.onnx.lowerings import lowers
from irgraph.dtypes import DType
from irgraph.ir import Node, Value
from irgraph.ops.attention import alibi_slopes, xl_inv_frequencies
from irgraph.ops.rotary import inv_frequencies, rotary_attention_factor

F32 = np.float32


def bnsh(e: Emitter, x: str) -> str:
    return e.op1("Transpose", x, perm=[0, 2, 1, 3])  # (B, S, H, D) -> (B, H, S, D)


def visible_mask(
    e: Emitter,
    q_len: str,
    total: str,
    key_mask: str,
    prefix: str,
    causal: bool,
    window: int,
    stride: int = 0,
) -> str | None:
    """Bool mask broadcastable to [B, 1, S, T] (None: everything visible).

    q_len/total: int64 scalars.
    """
    qpos = kpos = ""  # positions, set when causal, window or stride needs them
    if causal or window or stride:
        past = e.op1("Sub", total, q_len)
        qpos = e.op1(
            "Unsqueeze", e.op1("Range", past, total, e.const(1, np.int64)), e.ints(1)
        )  # (S, 1)
        kpos = e.op1(
            "Unsqueeze",
            e.op1("Range", e.const(0, np.int64), total, e.const(1, np.int64)),
            e.ints(0),
        )  # (1, T)
    allowed = None
    if causal:
        allowed = e.op1("LessOrEqual", kpos, qpos)  # (S, T)
        if prefix:
            pre = e.op1(
                "Less",
                e.op1("Unsqueeze", kpos, e.ints(0)),
                e.op1("Unsqueeze", e.op1("Cast", prefix, to=7), e.ints(1, 2)),
            )  # (B, 1, T)
            allowed = e.op1("Or", e.op1("Unsqueeze", allowed, e.ints(0)), pre)  # (B, S, T)
            allowed = e.op1("Unsqueeze", allowed, e.ints(1))  # (B, 1, S, T)
    if window:
        near = e.op1("Less", e.op1("Sub", qpos, kpos), e.const(window, np.int64))  # (S, T)
        allowed = near if allowed is None else e.op1("And", allowed, near)
    if stride:  # Mod of int64 takes the divisor's sign, as numpy's %
        step = e.op1("Mod", e.op1("Sub", qpos, kpos), e.const(stride, np.int64))
        on = e.op1("Equal", step, e.const(0, np.int64))  # (S, T)
        allowed = on if allowed is None else e.op1("And", allowed, on)
    if key_mask:
        keys = e.op1("Unsqueeze", e.op1("Cast", key_mask, to=9), e.ints(1, 2))  # (B, 1, 1, T)
        allowed = keys if allowed is None else e.op1("And", allowed, keys)
    return allowed


def sdpa(
    e: Emitter,
    q: str,
    k: str,
    v: str,
    *,
    hq: int,
    hkv: int,
    head_dim: int,
    v_dim: int,
    key_mask: str = "",
    bias: str = "",
    prefix: str = "",
    causal: bool = True,
    window: int = 0,
    scale: float | None = None,
    softcap: float = 0.0,
    stride: int = 0,
    allowed: str = "",
) -> str:
    """Attention over BNSH q [B,Hq,S,D], k [B,Hkv,T,D], v [B,Hkv,T,Dv] -> [B,Hq,S,Dv].

    `allowed` (bool [B, 1, S, T]) replaces the masks built from the other arguments."""
    group = hq // hkv
    scale = 1.0 / np.sqrt(head_dim) if scale is None else scale
    qg = e.op1("Reshape", q, e.ints(0, hkv, -1, head_dim)) if group > 1 else q  # (B, Hkv, G·S, D)
    scores = e.op1(
        "Mul", e.op1("MatMul", qg, e.op1("Transpose", k, perm=[0, 1, 3, 2])), e.const(float(scale))
    )
    if group > 1:
        scores = e.op1("Reshape", scores, e.ints(0, hq, -1, 0))  # (B, Hq, S, T)
    if softcap:
        scores = e.op1(
            "Mul",
            e.op1("Tanh", e.op1("Div", scores, e.const(float(softcap)))),
            e.const(float(softcap)),
        )
    if bias:
        scores = e.op1("Add", scores, bias)
    mask = allowed or visible_mask(
        e, e.scalar_dim(q, 2), e.scalar_dim(k, 2), key_mask, prefix, causal, window, stride
    )
    if mask is not None:
        scores = e.op1("Where", mask, scores, e.const(-np.inf, e.np_float))
    any_visible = None
    if (key_mask or allowed) and mask is not None:  # a fully masked row must give 0, not NaN
        seen = e.op1(
            "ReduceMax",
            e.op1("Cast", e.op1("Expand", mask, e.op1("Shape", scores)), to=e.onnx_type(DType.f32)),
            e.ints(-1),
            keepdims=1,
        )
        any_visible = e.op1("Cast", seen, to=e.onnx_type(DType.f32))
        scores = e.op1("Where", e.op1("Cast", seen, to=9), scores, e.const(0.0))
    probs = e.op1("Softmax", scores, axis=-1)
    if any_visible is not None:
        probs = e.op1("Mul", probs, any_visible)
    if group > 1:
        probs = e.op1("Reshape", probs, e.ints(0, hkv, -1, 0))  # (B, Hkv, G·S, T)
    out = e.op1("MatMul", probs, v)
    return e.op1("Reshape", out, e.ints(0, hq, -1, v_dim)) if group > 1 else out


def _gqa_fits(e: Emitter, node: Node) -> bool:
    q, v = node.arg(0), node.arg(2)
    pk, bias, prefix = node.inputs[3], node.inputs[6], node.inputs[7]
    head_dim = q.type.shape[3]
    return (
        e.flavour == "ort"
        and pk is not None
        and node.attrs["causal"]
        and not node.attrs["stride"]
        and bias is None
        and prefix is None
        and e.dtype in (DType.f32, DType.f16)
        and v.type.shape[3] == head_dim
        and isinstance(head_dim, int)
        and head_dim % 8 == 0
    )  # the CPU kernel wants head_size % 8 == 0


def _gqa(e: Emitter, node: Node, ins: Sequence[str]) -> list[str]:
    q, k = node.arg(0), node.arg(1)
    hq = static_dim(q.type.shape[2], node, "query heads")
    d = static_dim(q.type.shape[3], node, "head_dim")
    hkv = static_dim(k.type.shape[2], node, "kv heads")
    key_mask = ins[5]
    if key_mask:  # per-row valid length - 1 and the padded total, as onnxruntime-genai feeds them
        seqlens, total = e.memo.get(("gqa_lengths", key_mask), (None, None))
        if seqlens is None:
            ones = e.op1(
                "Sub", e.op1("ReduceSum", key_mask, e.ints(1), keepdims=0), e.const(1, np.int64)
            )
            seqlens = e.op1("Cast", ones, to=6)
            total = e.op1("Cast", e.scalar_dim(key_mask, 1), to=6)
            e.memo[("gqa_lengths", key_mask)] = (seqlens, total)
    else:
        total64 = e.op1("Add", e.scalar_dim(ins[3], 2), e.scalar_dim(ins[0], 1))
        total = e.op1("Cast", total64, to=6)
        seqlens = e.op1(
            "Cast",
            e.op1("Expand", e.op1("Sub", total64, e.const(1, np.int64)), e.dim(ins[0], 0)),
            to=6,
        )
    flat = [e.flatten(x) for x in ins[:3]]  # (B, S, H·D)
    rotary: list[str] = []
    pair = _rotary_pair(e, q, k)
    if pair is not None:  # rotate inside GQA, from the same per-token tables and row indices
        flat[:2] = [e.flatten(e.name(r.inputs[0])) for r in pair]
        rotary = _gqa_tables(e, cos_sin(e, e.name(pair[0].inputs[1]), d, pair[0].attrs)[0], total)
    packed = e.memo.get(("packed", tuple(flat)))
    if packed is not None:  # one [B, S, (Hq + 2·Hkv)·D] tensor straight from the fused projection
        flat = [packed, "", ""]
    window = node.attrs["window"]
    out, present_k, present_v = e.op(
        "GroupQueryAttention",
        [*flat, ins[3], ins[4], seqlens, total, *rotary],
        [e.fresh("gqa"), e.result(node, 1), e.result(node, 2)],
        domain="com.microsoft",
        num_heads=hq,
        kv_num_heads=hkv,
        scale=node.attrs["scale"],
        softcap=node.attrs["softcap"] or None,
        local_window_size=window if window else None,
        do_rotary=1 if rotary else None,
        rotary_interleaved=int(pair[0].attrs["interleaved"]) if pair is not None else None,
    )
    out4 = e.op("Reshape", [out, e.ints(0, 0, hq, d)], [e.result(node, 0)])[0]
    e.flat[out4] = out
    return [out4, present_k, present_v]


def _gqa_tables(e: Emitter, cos: str, total: str) -> list[str]:
    """The rotary lowering's per-token cos/sin rows, zero-padded.

    Padded to the >= total rows GQA checks for.
    """
    key = ("gqa_rows", cos, total)
    if key not in e.memo:
        cos2, sin2, pos = e.memo[("rotary_rows", cos)]
        rows = e.dim(cos2, 0)
        extra = e.op1(
            "Sub",
            e.op1("Max", rows, e.op1("Unsqueeze", e.op1("Cast", total, to=7), e.ints(0))),
            rows,
        )
        pads = e.op1(
            "Concat", e.ints(0, 0), extra, e.ints(0), axis=0
        )  # [begin rows, begin cols, end rows, end cols]
        e.memo[key] = [e.op1("Pad", cos2, pads), e.op1("Pad", sin2, pads), pos]
    return e.memo[key]


def _rotary_pair(e: Emitter, q: Value, k: Value) -> tuple[Node, Node] | None:
    """q and k rotated over all of head_dim by one rotary setting and position tensor.

    That is the case GQA can do itself.

    GQA gathers cos/sin rows by its position_ids input; it is given the rotary lowering's per-token
    tables and row indices (0..B·S-1), so the result is the same rotation the rotary nodes compute.
    """
    rq, rk = (e.producer.get(id(v)) for v in (q, k))
    if rq is None or rk is None or rq.op != "rotary" or rk.op != "rotary":
        return None
    if rq.inputs[1] is not rk.inputs[1] or dict(rq.attrs) != dict(rk.attrs):
        return None
    head_dim = q.type.shape[3]
    if (
        not isinstance(head_dim, int)
        or (rq.attrs["rotary_dim"] or head_dim) != head_dim
        or head_dim % 16  # the kernel's rotary: head_size % 16
    ):
        return None
    return rq, rk


@lowers("attention")
def _attention(e: Emitter, node: Node, *ins: str) -> list[str]:
    if _gqa_fits(e, node):
        return _gqa(e, node, ins)
    q, k, v = node.arg(0), node.arg(1), node.arg(2)
    pk, pv, km, prefix = node.inputs[3], node.inputs[4], node.inputs[5], node.inputs[7]
    a = node.attrs
    hq = static_dim(q.type.shape[2], node, "query heads")
    d = static_dim(q.type.shape[3], node, "head_dim")
    hkv = static_dim(k.type.shape[2], node, "kv heads")
    dv = static_dim(v.type.shape[3], node, "v head_dim")
    kt, vt = bnsh(e, ins[1]), bnsh(e, ins[2])
    present_k = (
        e.op("Concat", [ins[3], kt], [e.result(node, 1)], axis=2)[0]
        if pk is not None
        else e.op("Identity", [kt], [e.result(node, 1)])[0]
    )
    present_v = (
        e.op("Concat", [ins[4], vt], [e.result(node, 2)], axis=2)[0]
        if pv is not None
        else e.op("Identity", [vt], [e.result(node, 2)])[0]
    )
    qt = bnsh(e, ins[0])
    if (
        e.flavour == "portable"
        and km is None
        and prefix is None
        and not a["window"]
        and not a["stride"]
        and hq % hkv == 0
        and dv == d
    ):
        out = e.op(
            "Attention",
            [qt, present_k, present_v, ins[6]],
            1,
            is_causal=int(a["causal"]),
            scale=a["scale"],
            softcap=a["softcap"] or None,
        )[0]
    else:
        out = sdpa(
            e,
            qt,
            present_k,
            present_v,
            hq=hq,
            hkv=hkv,
            head_dim=d,
            v_dim=dv,
            key_mask=ins[5],
            bias=ins[6],
            prefix=ins[7],
            causal=a["causal"],
            window=a["window"],
            scale=a["scale"],
            softcap=a["softcap"],
            stride=a["stride"],
        )
    return [
        e.op("Transpose", [out], [e.result(node, 0)], perm=[0, 2, 1, 3])[0],
        present_k,
        present_v,
    ]


# -- rotary ---------------------------------------------------------------------------------

_ROTARY_TABLE_ATTRS = (
    "base",
    "scaling",
    "factor",
    "original_max_position",
    "low_freq_factor",
    "high_freq_factor",
    "beta_fast",
    "beta_slow",
    "mscale",
    "mscale_all_dim",
    "attention_factor",
)


def cos_sin(e: Emitter, pos: str, rd: int, attrs: Mapping[str, Any]) -> tuple[str, str]:
    """cos and sin [B, S, rd/2] in the compute dtype.

    Computed once per position tensor and scaling.
    """
    key = ("cos_sin", pos, rd, tuple(attrs[k] for k in _ROTARY_TABLE_ATTRS))
    if key in e.memo:
        return e.memo[key]
    a = {
        k: attrs[k]
        for k in _ROTARY_TABLE_ATTRS
        if k not in ("mscale", "mscale_all_dim", "attention_factor")
    }
    inv = e.const(inv_frequencies(rd, **a).astype(F32), F32)
    positions = e.op1("Cast", pos, to=1)
    if attrs["scaling"] == "dynamic_ntk":  # the base grows with the longest position in the batch
        inv = _dynamic_ntk(e, pos, inv, rd, attrs)
    angles = e.op1(
        "Mul", e.op1("Unsqueeze", positions, e.ints(-1)), inv
    )  # (B, S, rd/2), fp32 as the reference
    scale = rotary_attention_factor(
        attrs["scaling"],
        attrs["factor"],
        attrs["mscale"],
        attrs["mscale_all_dim"],
        attrs["attention_factor"],
    )
    result = []
    for fn in ("Cos", "Sin"):
        t = e.op1(fn, angles)
        if scale != 1.0:
            t = e.op1("Mul", t, e.const(scale, F32))
        result.append(t if e.dtype is DType.f32 else e.op1("Cast", t, to=e.onnx_type(DType.f32)))
    e.memo[key] = tuple(result)
    return e.memo[key]


def _dynamic_ntk(e: Emitter, pos: str, inv_static: str, rd: int, attrs: Mapping[str, Any]) -> str:
    orig, factor, base = attrs["original_max_position"], attrs["factor"], attrs["base"]
    longest = e.op1(
        "Cast", e.op1("Add", e.op1("ReduceMax", pos, keepdims=0), e.const(1, np.int64)), to=1
    )
    grown = e.op1(
        "Sub", e.op1("Mul", longest, e.const(factor / orig, F32)), e.const(factor - 1, F32)
    )
    scaled_base = e.op1("Mul", e.op1("Pow", grown, e.const(rd / (rd - 2), F32)), e.const(base, F32))
    exps = e.const((np.arange(0, rd, 2, dtype=np.float64) / rd).astype(F32), F32)
    inv_dynamic = e.op1("Reciprocal", e.op1("Pow", scaled_base, exps))
    return e.op1(
        "Where", e.op1("Greater", longest, e.const(float(orig), F32)), inv_dynamic, inv_static
    )


@lowers("rotary")
def _rotary(e: Emitter, node: Node, *ins: str) -> list[str]:
    x = node.arg(0)
    heads = static_dim(x.type.shape[2], node, "heads")
    head_dim = static_dim(x.type.shape[3], node, "head_dim")
    a = node.attrs
    rd = a["rotary_dim"] or head_dim
    cos, sin = cos_sin(e, ins[1], rd, a)
    flat = e.flatten(ins[0])  # (B, S, H·D)
    if e.flavour == "portable":  # RotaryEmbedding-23 takes per-token cos/sin [B, S, rd/2] directly
        out = e.op1(
            "RotaryEmbedding",
            flat,
            cos,
            sin,
            num_heads=heads,
            rotary_embedding_dim=rd,
            interleaved=int(a["interleaved"]),
        )
    else:
        # the contrib op gathers rows of a table: make the table the per-token rows,
        # positions 0..B·S-1
        key = ("rotary_rows", cos)
        if key not in e.memo:
            cos2, sin2 = (e.op1("Reshape", t, e.ints(-1, rd // 2)) for t in (cos, sin))
            rows = e.op1("Range", e.const(0, np.int64), e.scalar_dim(cos2, 0), e.const(1, np.int64))
            e.memo[key] = (cos2, sin2, e.op1("Reshape", rows, e.op1("Shape", ins[1])))
        cos2, sin2, pos = e.memo[key]
        out = e.op1(
            "RotaryEmbedding",
            flat,
            pos,
            cos2,
            sin2,
            domain="com.microsoft",
            num_heads=heads,
            rotary_embedding_dim=rd,
            interleaved=int(a["interleaved"]),
        )
    out4 = e.op("Reshape", [out, e.ints(0, 0, heads, head_dim)], [e.result(node, 0)])
    e.flat[out4[0]] = out
    return out4


# -- position biases ------------------------------------------------------------------------


@lowers("alibi")
def _alibi(e: Emitter, node: Node, *ins: str) -> list[str]:
    mask = e.op1("Cast", ins[0], to=1)
    positions = e.op1(
        "Mul", e.op1("Sub", e.op1("CumSum", mask, e.const(1, np.int64)), e.const(1.0, F32)), mask
    )
    slopes = e.const(alibi_slopes(node.attrs["num_heads"]).reshape(1, -1, 1, 1), F32)
    bias = e.op1("Mul", e.op1("Unsqueeze", positions, e.ints(1, 2)), slopes)  # (B, H, 1, T)
    return e.op("Cast", [bias], [e.result(node, 0)], to=e.onnx_type(DType.f32))


@lowers("relative_position_bias")
def _relative_bias(e: Emitter, node: Node, *ins: str) -> list[str]:
    a = node.attrs
    num_buckets, heads = (static_dim(d, node, "bias table dim") for d in node.arg(2).type.shape)
    sq, total = e.scalar_dim(ins[0], 1), e.scalar_dim(ins[1], 1)
    one, zero = e.const(1, np.int64), e.const(0, np.int64)
    qpos = e.op1("Range", e.op1("Sub", total, sq), total, one)
    kpos = e.op1("Range", zero, total, one)
    relative = e.op1(
        "Sub", e.op1("Unsqueeze", kpos, e.ints(0)), e.op1("Unsqueeze", qpos, e.ints(1))
    )  # (S, T)
    buckets = e.const(0, np.int64)
    n = num_buckets
    if a["bidirectional"]:
        n //= 2
        buckets = e.op1(
            "Mul", e.op1("Cast", e.op1("Greater", relative, zero), to=7), e.const(n, np.int64)
        )
        relative = e.op1("Abs", relative)
    else:
        relative = e.op1("Neg", e.op1("Min", relative, zero))
    exact = n // 2
    ratio = e.op1("Div", e.op1("Cast", relative, to=1), e.const(float(exact), F32))
    scaled = e.op1(
        "Mul",
        e.op1("Div", e.op1("Log", ratio), e.const(float(np.log(a["max_distance"] / exact)), F32)),
        e.const(float(n - exact), F32),
    )
    large = e.op1(
        "Min",
        e.op1("Add", e.op1("Cast", scaled, to=7), e.const(exact, np.int64)),
        e.const(n - 1, np.int64),
    )
    small = e.op1("Less", relative, e.const(exact, np.int64))
    buckets = e.op1("Add", buckets, e.op1("Where", small, relative, large))
    bias = e.op1("Transpose", e.op1("Gather", ins[2], buckets, axis=0), perm=[2, 0, 1])  # (H, S, T)
    shape = e.op1(
        "Concat",
        e.dim(ins[0], 0),
        e.ints(heads),
        e.op1("Unsqueeze", sq, e.ints(0)),
        e.op1("Unsqueeze", total, e.ints(0)),
        axis=0,
    )
    return e.op("Expand", [e.op1("Unsqueeze", bias, e.ints(0)), shape], [e.result(node, 0)])


@lowers("xl_relative_bias")
def _xl_relative_bias(e: Emitter, node: Node, *ins: str) -> list[str]:
    """One projected sinusoid per distance (past+2·seq-1 rows), then a gather per (i, j)."""
    q = node.arg(0)
    heads = static_dim(q.type.shape[2], node, "heads")
    head_dim = static_dim(q.type.shape[3], node, "head_dim")
    width = static_dim(node.arg(2).type.shape[1], node, "sinusoid width")
    sq, total = e.scalar_dim(ins[0], 1), e.scalar_dim(ins[1], 1)
    zero, one = e.const(0, np.int64), e.const(1, np.int64)
    dist = e.op1(  # distance of row l: total-1-l, down to 1-seq
        "Range", e.op1("Sub", total, one), e.op1("Neg", sq), e.const(-1, np.int64)
    )
    freqs = e.const(xl_inv_frequencies(width).astype(F32).reshape(1, -1), F32)
    angles = e.op1("Mul", e.op1("Unsqueeze", e.op1("Cast", dist, to=1), e.ints(1)), freqs)
    sinusoid = e.op1("Concat", e.op1("Sin", angles), e.op1("Cos", angles), axis=-1)  # (L, W)
    weight = e.op1("Transpose", e.op1("Cast", ins[2], to=1), perm=[1, 0])  # (W, H·D)
    r = e.op1("Reshape", e.op1("MatMul", sinusoid, weight), e.ints(-1, heads, head_dim))
    qt = e.op1("Transpose", e.op1("Cast", ins[0], to=1), perm=[0, 2, 1, 3])  # (B, H, S, D)
    scores = e.op1("MatMul", qt, e.op1("Transpose", r, perm=[1, 2, 0]))  # (B, H, S, L)
    i = e.op1("Unsqueeze", e.op1("Range", zero, sq, one), e.ints(1))
    j = e.op1("Unsqueeze", e.op1("Range", zero, total, one), e.ints(0))
    index = e.op1("Add", e.op1("Sub", e.op1("Sub", sq, one), i), j)  # (S, T): row s-1-i+j
    shape = e.op1(
        "Concat",
        e.dim(ins[0], 0),
        e.ints(heads),
        e.op1("Unsqueeze", sq, e.ints(0)),
        e.op1("Unsqueeze", total, e.ints(0)),
        axis=0,
    )
    bias = e.op1("GatherElements", scores, e.op1("Expand", index, shape), axis=3)
    bias = e.op1("Mul", bias, e.const(np.asarray(node.attrs["scale"], F32), F32))
    return e.op("Cast", [bias], [e.result(node, 0)], to=e.onnx_type(DType.f32))
