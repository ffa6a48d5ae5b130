"""Attention with an explicit KV cache, its position biases, and latent attention.

Layouts: q/k/v enter as `[batch, seq, heads, head_dim]` (BSNH, straight from a
linear + reshape); the cache is `[batch, kv_heads, past, head_dim]` (BNSH, the
layout ONNX Runtime GQA and onnxruntime-genai use). `present = concat(past,
new)` along the sequence, so one graph serves prefill (past = 0) and decode.

Masking, for query i of a call with `past` cached tokens (absolute position
past+i) and key j (absolute position j):
  causal      j <= past+i           (bottom-right aligned)
  window W    past+i - j < W        (sliding window, Mistral's convention; a locally banded
                                    layer of GPT-3)
  stride S    (past+i - j) % S == 0 (the strided pattern of Child et al. 2019, Sec. 4.2)
  prefix_len  j < prefix_len[b] is always visible (prefix-LM: GLM, U-PaLM)
  key_mask    key_mask[b, j] != 0   (padding)
A query with no visible key outputs zeros rather than NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import IRError
from irgraph.ops.tensor import softmax_np
from irgraph.registry import Attr, Category, OpDef, expect, given, register
from irgraph.types import Dim, TensorType, add_dims


def _check_mask(key_mask: TensorType | None, batch: Dim, total: Dim) -> None:
    if key_mask is not None:
        expect(
            key_mask.shape == (batch, total),
            "key_mask must be [batch, past+seq]",
            expected=(batch, total),
            got=key_mask.shape,
        )


@register
class Attention(OpDef):
    """Scaled dot-product attention: MHA, MQA (1 KV head) or GQA; self or cross."""

    name = "attention"
    inputs = ("q", "k", "v", "past_key?", "past_value?", "key_mask?", "bias?", "prefix_len?")
    category = Category.ATTENTION
    outputs = ("out", "present_key", "present_value")
    attrs = {
        "causal": Attr("bool", True),
        "window": Attr("int", 0, doc="sliding window in tokens; 0 = unlimited"),
        "stride": Attr("int", 0, doc="keys at distances that are multiples of stride; 0 = off"),
        "scale": Attr("float", None, optional=True, doc="softmax scale; default 1/sqrt(head_dim)"),
        "softcap": Attr("float", 0.0, doc="cap·tanh(s/cap) on scores (Grok-1); 0 = off"),
    }

    def infer(
        self,
        q: TensorType,
        k: TensorType,
        v: TensorType,
        past_key: TensorType | None,
        past_value: TensorType | None,
        key_mask: TensorType | None,
        bias: TensorType | None,
        prefix_len: TensorType | None,
        **attrs: Any,
    ) -> list[TensorType]:
        expect(
            q.rank == 4 and k.rank == 4 and v.rank == 4,
            "q, k, v must be [batch, seq, heads, head_dim]",
            got=(q, k, v),
        )
        for key in ("window", "stride"):
            expect(attrs[key] >= 0, f"attention {key} must be >= 0 (0 = off)", got=attrs[key])
        b, sq, hq, d = q.shape
        expect(
            k.shape[0] == b and v.shape[0] == b,
            "q, k, v differ in batch",
            expected=b,
            got=(k.shape[0], v.shape[0]),
        )
        expect(
            k.shape[1] == v.shape[1] and k.shape[2] == v.shape[2],
            "k and v differ in seq or heads",
            expected=k.shape[:3],
            got=v.shape[:3],
        )
        expect(k.shape[3] == d, "k head_dim differs from q", expected=d, got=k.shape[3])
        hkv = k.shape[2]
        expect(
            isinstance(hq, int) and isinstance(hkv, int) and hq % hkv == 0,
            "query heads must be a multiple of KV heads",
            expected=f"a divisor of {hq}",
            got=hkv,
        )
        dv = v.shape[3]
        total = k.shape[1]
        expect((past_key is None) == (past_value is None), "past_key and past_value come together")
        if past_key is not None and past_value is not None:  # both or neither, checked just above
            expect(
                past_key.shape[:2] == (b, hkv) and past_key.shape[3] == d,
                "past_key must be [batch, kv_heads, past, head_dim]",
                expected=f"[{b}, {hkv}, past, {d}]",
                got=past_key,
            )
            expect(
                past_value.shape == (b, hkv, past_key.shape[2], dv),
                "past_value must match past_key",
                expected=f"[{b}, {hkv}, {past_key.shape[2]}, {dv}]",
                got=past_value,
            )
            total = add_dims(past_key.shape[2], k.shape[1])
        _check_mask(key_mask, b, total)
        if bias is not None:
            expect(
                bias.rank == 4 and bias.shape[3] == total,
                "bias must be [batch|1, heads|1, seq|1, past+seq]",
                expected=f"[.., .., .., {total}]",
                got=bias,
            )
        if prefix_len is not None:
            expect(
                prefix_len.shape == (b,) and prefix_len.dtype in (DType.i64, DType.i32),
                "prefix_len must be integer [batch]",
                got=prefix_len,
            )
        kv_type = TensorType(k.dtype, (b, hkv, total, d))
        return [
            TensorType(q.dtype, (b, sq, hq, dv)),
            kv_type,
            TensorType(v.dtype, (b, hkv, total, dv)),
        ]

    def ref(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        past_key: np.ndarray | None,
        past_value: np.ndarray | None,
        key_mask: np.ndarray | None,
        bias: np.ndarray | None,
        prefix_len: np.ndarray | None,
        causal: bool,
        window: int,
        stride: int,
        scale: float | None,
        softcap: float,
    ) -> list[np.ndarray]:
        k_new = np.transpose(k, (0, 2, 1, 3)).astype(np.float32)  # (B, Hkv, Sk, D)
        v_new = np.transpose(v, (0, 2, 1, 3)).astype(np.float32)
        if past_key is not None and past_value is not None:  # both or neither (infer checks)
            k_all = np.concatenate([past_key.astype(np.float32), k_new], axis=2)
            v_all = np.concatenate([past_value.astype(np.float32), v_new], axis=2)
        else:
            k_all, v_all = k_new, v_new
        out = sdpa(
            np.transpose(q, (0, 2, 1, 3)).astype(np.float32),
            k_all,
            v_all,
            key_mask=key_mask,
            bias=bias,
            prefix_len=prefix_len,
            causal=causal,
            window=window,
            stride=stride,
            scale=scale,
            softcap=softcap,
        )
        return [np.transpose(out, (0, 2, 1, 3)), k_all, v_all]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        b, sq, hq, dv = outs[0].concrete(env)
        d = given(ins, 0).concrete(env)[3]
        total = outs[1].concrete(env)[2]
        return 2 * b * hq * sq * total * (d + dv)


def new_tokens(q: TensorType, k: TensorType, v: TensorType) -> tuple[Dim, Dim, int, Dim, int, Dim]:
    """(batch, seq, heads, head_dim, kv_heads, v_dim) of one call's q, k and v, all
    [batch, seq, heads, head_dim] (the cached attentions' check: their caches come apart)."""
    expect(
        q.rank == 4 and k.rank == 4 and v.rank == 4,
        "q, k, v must be [batch, seq, heads, head_dim]",
        got=(q, k, v),
    )
    b, s, hq, d = q.shape
    hkv, dv = k.shape[2], v.shape[3]
    expect(
        k.shape == (b, s, hkv, d) and v.shape[:3] == (b, s, hkv),
        "k and v must be [batch, seq, kv_heads, head_dim] like q",
        expected=f"[{b}, {s}, kv_heads, {d}]",
        got=(k, v),
    )
    if not (isinstance(hq, int) and isinstance(hkv, int) and hq % hkv == 0):
        raise IRError(
            "query heads must be a multiple of KV heads", expected=f"a divisor of {hq}", got=hkv
        )
    return b, s, hq, d, hkv, dv


def visible(
    sq: int,
    total: int,
    batch: int,
    key_mask: np.ndarray | None = None,
    prefix_len: np.ndarray | None = None,
    causal: bool = True,
    window: int = 0,
    stride: int = 0,
) -> np.ndarray:
    """Boolean [batch, 1, sq, total]: which key each query may attend to."""
    past = total - sq
    qpos = past + np.arange(sq)[:, None]
    kpos = np.arange(total)[None, :]
    allowed = np.ones((batch, 1, sq, total), dtype=bool)
    if causal:
        rule = kpos <= qpos
        if prefix_len is not None:
            rule = rule | (kpos[None] < np.asarray(prefix_len).reshape(-1, 1, 1))
        allowed &= rule[:, None] if rule.ndim == 3 else rule
    if window:
        allowed &= (qpos - kpos) < window
    if stride:
        allowed &= (qpos - kpos) % stride == 0
    if key_mask is not None:
        allowed &= np.asarray(key_mask).astype(bool)[:, None, None, :]
    return allowed


def sdpa(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    key_mask: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    prefix_len: np.ndarray | None = None,
    causal: bool = True,
    window: int = 0,
    scale: float | None = None,
    softcap: float = 0.0,
    stride: int = 0,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Attention over BNSH tensors; k/v may have fewer heads than q (grouped).

    `allowed` ([batch, 1, sq, total] bool) replaces the masks computed from key_mask, prefix_len,
    causal, window and stride, for callers whose keys are not in position order (ring caches)."""
    b, hq, sq, d = q.shape
    hkv, total = k.shape[1], k.shape[2]
    group = hq // hkv
    k = np.repeat(k, group, axis=1)  # (B, Hq, T, D)
    v = np.repeat(v, group, axis=1)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    scores = (q @ np.swapaxes(k, -1, -2)) * np.float32(scale)  # (B, Hq, Sq, T)
    if softcap:
        scores = np.float32(softcap) * np.tanh(scores / np.float32(softcap))
    if bias is not None:
        scores = scores + bias.astype(np.float32)
    if allowed is None:
        allowed = visible(sq, total, b, key_mask, prefix_len, causal, window, stride)
    scores = np.where(allowed, scores, -np.inf)
    any_visible = allowed.any(axis=-1, keepdims=True)
    probs = softmax_np(np.where(any_visible, scores, 0.0), -1) * any_visible
    return (probs @ v).astype(np.float32)


def alibi_slopes(num_heads: int) -> np.ndarray:
    """ALiBi head slopes (Press et al.; BLOOM's build_alibi_tensor for non-powers of two)."""
    closest = 2 ** math.floor(math.log2(num_heads))
    base = 2.0 ** (-(2.0 ** -(math.log2(closest) - 3)))
    slopes = [base ** (i + 1) for i in range(closest)]
    if closest != num_heads:
        extra = 2.0 ** (-(2.0 ** -(math.log2(2 * closest) - 3)))
        slopes += [extra ** (2 * i + 1) for i in range(min(closest, num_heads - closest))]
    return np.asarray(slopes, dtype=np.float32)


@register
class Alibi(OpDef):
    """ALiBi bias [batch, heads, 1, past+seq] = slope_h · (key position among unpadded tokens).

    Only the key position appears: the query term is constant along a softmax
    row, so this equals slope·(j - i) inside softmax (BLOOM's form).
    """

    name = "alibi"
    inputs = ("key_mask",)
    category = Category.POSITION
    attrs = {"num_heads": Attr("int")}

    def infer(self, key_mask: TensorType, num_heads: int) -> list[TensorType]:
        expect(key_mask.rank == 2, "alibi key_mask must be [batch, past+seq]", got=key_mask)
        return [TensorType(DType.f32, (key_mask.shape[0], num_heads, 1, key_mask.shape[1]))]

    def ref(self, key_mask: np.ndarray, num_heads: int) -> list[np.ndarray]:
        mask = key_mask.astype(np.float32)
        positions = (np.cumsum(mask, axis=-1) - 1) * mask  # (B, T)
        return [alibi_slopes(num_heads)[None, :, None, None] * positions[:, None, None, :]]


def t5_buckets(
    relative: np.ndarray, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
    """T5's relative-position bucket of key_pos - query_pos (exact for small, log-spaced beyond)."""
    buckets = np.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative > 0).astype(relative.dtype) * num_buckets
        relative = np.abs(relative)
    else:
        relative = -np.minimum(relative, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) for small distances, masked below
        large = max_exact + (
            np.log(relative.astype(np.float32) / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(relative < max_exact, relative, large)


@register
class RelativePositionBias(OpDef):
    """T5 bias [batch, heads, seq, past+seq] = table[bucket(key_pos - query_pos)].

    Query i of x ([batch, seq, ...]) sits at position past+i, as in the causal
    mask; keys sit at 0..past+seq-1 (the width of key_mask).
    """

    name = "relative_position_bias"
    inputs = ("x", "key_mask", "table")
    category = Category.POSITION
    weights = ("table",)
    attrs = {"bidirectional": Attr("bool"), "max_distance": Attr("int", 128)}

    def infer(
        self,
        x: TensorType,
        key_mask: TensorType,
        table: TensorType,
        bidirectional: bool,
        max_distance: int,
    ) -> list[TensorType]:
        expect(
            x.rank >= 2 and key_mask.rank == 2,
            "x must be [batch, seq, ...] and key_mask [batch, past+seq]",
            got=(x, key_mask),
        )
        expect(table.rank == 2, "relative bias table must be [num_buckets, heads]", got=table)
        return [TensorType(DType.f32, (x.shape[0], table.shape[1], x.shape[1], key_mask.shape[1]))]

    def ref(
        self,
        x: np.ndarray,
        key_mask: np.ndarray,
        table: np.ndarray,
        bidirectional: bool,
        max_distance: int,
    ) -> list[np.ndarray]:
        sq, total = x.shape[1], key_mask.shape[1]
        qpos = total - sq + np.arange(sq, dtype=np.int64)
        relative = np.arange(total, dtype=np.int64)[None, :] - qpos[:, None]  # (Sq, T)
        buckets = t5_buckets(relative, bidirectional, table.shape[0], max_distance)
        bias = np.transpose(table.astype(np.float32)[buckets], (2, 0, 1))  # (H, Sq, T)
        return [np.broadcast_to(bias[None], (x.shape[0], *bias.shape)).copy()]


def xl_inv_frequencies(width: int) -> np.ndarray:
    """Transformer-XL's sinusoid frequencies 1/10000^(2k/width), k < width/2 (float64)."""
    return 1.0 / (10000.0 ** (np.arange(0, width, 2, dtype=np.float64) / width))


@register
class XlRelativeBias(OpDef):
    """Transformer-XL's position term (Dai et al. 2019, Sec. 3.3, terms (b) + (d)) as a bias
    [batch, heads, seq, past+seq] = scale · (q_i + v)ᵀ · W_r R_{past+i-j}.

    `q` is the query with the learned bias v already added ([batch, seq, heads, head_dim]);
    R_d = [sin(d·f), cos(d·f)] is the sinusoid of distance d (width = weight's input width,
    f = xl_inv_frequencies) and W_r (`weight`, [heads·head_dim, width]) the layer's projection
    (`r_net`). Query i sits at position past+i (past = key_mask width - seq), as in the causal
    mask; negative distances (keys after the query) get their sinusoid too. The content terms
    (a) + (c) are attention of (q + u) on k; `scale` is the attention's softmax scale.
    """

    name = "xl_relative_bias"
    inputs = ("q", "key_mask", "weight")
    category = Category.POSITION
    weights = ("weight",)
    attrs = {"scale": Attr("float")}

    def infer(
        self, q: TensorType, key_mask: TensorType, weight: TensorType, scale: float
    ) -> list[TensorType]:
        expect(q.rank == 4, "q must be [batch, seq, heads, head_dim]", got=q)
        expect(key_mask.rank == 2, "key_mask must be [batch, past+seq]", got=key_mask)
        b, s, h, d = q.shape
        expect(
            weight.rank == 2
            and isinstance(h, int)
            and isinstance(d, int)
            and weight.shape[0] == h * d
            and isinstance(weight.shape[1], int)
            and weight.shape[1] % 2 == 0,
            "weight must be [heads*head_dim, even width]",
            expected=f"[{h}*{d}, even]",
            got=weight.shape,
        )
        return [TensorType(DType.f32, (b, h, s, key_mask.shape[1]))]

    def ref(
        self, q: np.ndarray, key_mask: np.ndarray, weight: np.ndarray, scale: float
    ) -> list[np.ndarray]:
        b, s, h, d = q.shape
        total = key_mask.shape[1]
        dist = (total - s + np.arange(s))[:, None] - np.arange(total)[None, :]  # (S, T)
        angles = dist[..., None] * xl_inv_frequencies(weight.shape[1])  # (S, T, width/2)
        sinusoid = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)  # (S, T, width)
        r = (sinusoid @ weight.astype(np.float64).T).reshape(s, total, h, d)  # (S, T, H, D)
        bias = np.einsum("bihd,ijhd->bhij", q.astype(np.float64), r) * scale
        return [bias.astype(np.float32)]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        """The distance-table form the backends run: past+2·seq-1 projected sinusoids, then one
        product per query and distance."""
        b, h, s, total = outs[0].concrete(env)
        rows, width = given(ins, 2).concrete(env)
        distances = total + s - 1
        return 2 * distances * width * rows + 2 * b * s * distances * rows


@register
class LatentAttention(OpDef):
    """DeepSeek-v2 multi-head latent attention over a compressed KV cache.

    The cache holds, per token, the normalised KV latent c (kv_rank) and the
    shared rotated key part k_rope (rope_dim): `[batch, past, kv_rank+rope_dim]`.
    Keys and values are re-expanded with kv_b ([heads·(nope+v_dim), kv_rank]):
    k = [c·W_kᵀ, k_rope], v = c·W_vᵀ. q is `[batch, seq, heads, nope+rope_dim]`
    with its rope part already rotated. That is the definition (and this reference);
    the pass absorb-latent rewrites it with W_k and W_v absorbed into the query and
    the output, never expanding the cache (the ONNX and TVM backends lower that
    form), and `flops` counts the absorbed form.
    """

    name = "latent_attention"
    inputs = ("q", "latent", "k_rope", "kv_b", "past_latent?", "key_mask?")
    category = Category.ATTENTION
    weights = ("kv_b",)
    outputs = ("out", "present_latent")
    attrs = {
        "nope_dim": Attr("int"),
        "v_dim": Attr("int"),
        "scale": Attr("float", None, optional=True),
        "causal": Attr("bool", True),
    }

    def infer(
        self,
        q: TensorType,
        latent: TensorType,
        k_rope: TensorType,
        kv_b: TensorType,
        past_latent: TensorType | None,
        key_mask: TensorType | None,
        nope_dim: int,
        v_dim: int,
        scale: float | None,
        causal: bool,
    ) -> list[TensorType]:
        expect(q.rank == 4, "q must be [batch, seq, heads, nope+rope]", got=q)
        b, s, h, dq = q.shape
        if not isinstance(h, int) or not isinstance(
            dq, int
        ):  # they size kv_b and split q into nope/rope
            raise IRError(
                "latent_attention q must have concrete heads and head_dim", expected="ints", got=q
            )
        expect(
            latent.rank == 3 and latent.shape[:2] == (b, s),
            "latent must be [batch, seq, kv_rank]",
            got=latent,
        )
        rank = latent.shape[2]
        rope = dq - nope_dim
        expect(
            k_rope.shape == (b, s, 1, rope),
            "k_rope must be [batch, seq, 1, rope_dim]",
            expected=f"[{b}, {s}, 1, {rope}]",
            got=k_rope.shape,
        )
        expect(
            kv_b.shape == (h * (nope_dim + v_dim), rank),
            "kv_b must be [heads*(nope+v_dim), kv_rank]",
            expected=(h * (nope_dim + v_dim), rank),
            got=kv_b.shape,
        )
        total = s
        if past_latent is not None:
            expect(
                past_latent.rank == 3
                and past_latent.shape[0] == b
                and past_latent.shape[2] == rank + rope,
                "past_latent must be [batch, past, kv_rank+rope_dim]",
                expected=f"[{b}, past, {rank + rope}]",
                got=past_latent,
            )
            total = add_dims(past_latent.shape[1], s)
        _check_mask(key_mask, b, total)
        return [
            TensorType(q.dtype, (b, s, h, v_dim)),
            TensorType(latent.dtype, (b, total, rank + rope)),
        ]

    def ref(
        self,
        q: np.ndarray,
        latent: np.ndarray,
        k_rope: np.ndarray,
        kv_b: np.ndarray,
        past_latent: np.ndarray | None,
        key_mask: np.ndarray | None,
        nope_dim: int,
        v_dim: int,
        scale: float | None,
        causal: bool,
    ) -> list[np.ndarray]:
        b, s, h, dq = q.shape
        rank = latent.shape[2]
        new = np.concatenate([latent, k_rope[:, :, 0, :]], axis=-1).astype(
            np.float32
        )  # (B, S, R+rope)
        cache = (
            new
            if past_latent is None
            else np.concatenate([past_latent.astype(np.float32), new], axis=1)
        )
        c, kr = cache[..., :rank], cache[..., rank:]
        kv = (c @ kv_b.astype(np.float32).T).reshape(
            b, -1, h, nope_dim + v_dim
        )  # (B, T, H, nope+v)
        k = np.concatenate(
            [
                kv[..., :nope_dim],
                np.broadcast_to(kr[:, :, None, :], (*kr.shape[:2], h, kr.shape[-1])),
            ],
            axis=-1,
        )
        v = kv[..., nope_dim:]
        out = sdpa(
            np.transpose(q, (0, 2, 1, 3)).astype(np.float32),
            np.transpose(k, (0, 2, 1, 3)),
            np.transpose(v, (0, 2, 1, 3)),
            key_mask=key_mask,
            causal=causal,
            scale=1.0 / math.sqrt(dq) if scale is None else scale,
        )
        return [np.transpose(out, (0, 2, 1, 3)), cache]

    def flops(
        self,
        ins: Sequence[TensorType | None],
        outs: Sequence[TensorType],
        env: Mapping[str, int],
        **attrs: Any,
    ) -> int:
        """The absorbed form the compiled backends run.

        q_nope·W_k, attention over [c, k_rope] and c, then W_v.
        """
        b, s, h, dv = outs[0].concrete(env)
        total, cached = outs[1].concrete(env)[1:]
        rank, nope = given(ins, 1).concrete(env)[2], attrs["nope_dim"]
        return 2 * b * h * s * (nope * rank + total * (cached + rank) + rank * dv)
