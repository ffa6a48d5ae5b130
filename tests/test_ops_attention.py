"""Attention, its position biases and latent attention against independent torch code (fp32, 1e-5).

Masks are written out by hand in torch (never from `irgraph.ops.attention.visible`)
and, where torch has the variant, also checked with
`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import masking_utils
from transformers.models.bloom.modeling_bloom import build_alibi_tensor
from transformers.models.t5.modeling_t5 import T5Attention

from irgraph import IRError
from tests.helpers.op_util import close, randn, run_op

RNG = np.random.default_rng(99)
T = torch.from_numpy


def qkv(b=2, s=5, hq=4, hkv=4, d=8, dv=None):
    return randn(RNG, b, s, hq, d), randn(RNG, b, s, hkv, d), randn(RNG, b, s, hkv, dv or d)


def hand_mask(
    sq, total, batch=1, *, causal=True, window=0, stride=0, prefix_len=None, key_mask=None
) -> torch.Tensor:
    """Boolean [batch, 1, sq, total], written out loop by loop: query i sits at past+i."""
    past = total - sq
    allowed = torch.ones(batch, 1, sq, total, dtype=torch.bool)
    for b in range(batch):
        for i in range(sq):
            for j in range(total):
                ok = True
                if causal:
                    ok = j <= past + i or (prefix_len is not None and j < prefix_len[b])
                if window and not (past + i - j < window):
                    ok = False
                if stride and (past + i - j) % stride:
                    ok = False
                if key_mask is not None and not key_mask[b, j]:
                    ok = False
                allowed[b, 0, i, j] = bool(ok)
    return allowed


def torch_attention(q, k, v, allowed=None, scale=None, softcap=0.0, bias=None):
    """q [B,S,Hq,D], k/v [B,T,Hkv,D] (numpy or torch) -> [B,S,Hq,Dv], by the textbook formula."""
    q, k, v = (torch.as_tensor(a).transpose(1, 2).double() for a in (q, k, v))  # (B, H, S, D)
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    if softcap:
        scores = softcap * torch.tanh(scores / softcap)
    if bias is not None:
        scores = scores + torch.as_tensor(bias).double()
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a query that sees nothing outputs zeros
    return (probs @ v).transpose(1, 2).float()


def sdpa(q, k, v, **kw):
    out = F.scaled_dot_product_attention(
        T(q).transpose(1, 2),
        T(k).transpose(1, 2),
        T(v).transpose(1, 2),
        enable_gqa=q.shape[2] != k.shape[2],
        **kw,
    )
    return out.transpose(1, 2)


@pytest.mark.parametrize("hkv", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_causal_matches_sdpa(hkv):
    q, k, v = qkv(hkv=hkv)
    out, pk, pv = run_op("attention", q, k, v)
    close(out, sdpa(q, k, v, is_causal=True))
    close(out, torch_attention(q, k, v, hand_mask(5, 5)))
    close(pk, T(k).transpose(1, 2))  # present = the new keys in BNSH
    close(pv, T(v).transpose(1, 2))


@pytest.mark.parametrize("hkv", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_bidirectional_matches_sdpa(hkv):
    q, k, v = qkv(hkv=hkv)
    (out, _, _) = run_op("attention", q, k, v, causal=False)
    close(out, sdpa(q, k, v))


def test_value_head_dim_may_differ():
    q, k, v = qkv(dv=6)
    (out, _, pv) = run_op("attention", q, k, v)
    assert out.shape == (2, 5, 4, 6) and pv.shape == (2, 4, 5, 6)
    close(out, torch_attention(q, k, v, hand_mask(5, 5)))


def test_custom_scale_matches_sdpa():
    q, k, v = qkv(hkv=2)
    (out, _, _) = run_op("attention", q, k, v, scale=0.07)
    close(out, sdpa(q, k, v, is_causal=True, scale=0.07))


def test_softcap():
    q, k, v = qkv()
    q *= 4  # scores large enough for the cap to matter
    (out, _, _) = run_op("attention", q, k, v, softcap=2.0)
    close(out, torch_attention(q, k, v, hand_mask(5, 5), softcap=2.0))
    (plain, _, _) = run_op("attention", q, k, v)
    assert np.abs(out - plain).max() > 1e-3


def test_strided():
    """Child et al. 2019's strided pattern: query i sees keys i, i-3, i-6, ... (stride 3)."""
    q, k, v = qkv(s=9, hkv=2)
    (out, _, _) = run_op("attention", q, k, v, stride=3)
    close(out, torch_attention(q, k, v, hand_mask(9, 9, stride=3)))
    rows = torch.arange(9)
    every_third = ((rows[:, None] - rows[None, :]) % 3 == 0) & (rows[None, :] <= rows[:, None])
    close(out, sdpa(q, k, v, attn_mask=every_third))
    # decode: two new queries over a 5-token cache, bidirectional (negative distances too)
    pk, pv = randn(RNG, 2, 2, 5, 8), randn(RNG, 2, 2, 5, 8)
    q2, k2, v2 = qkv(s=2, hkv=2)
    (out, pk2, pv2) = run_op("attention", q2, k2, v2, pk, pv, causal=False, stride=2)
    k_all, v_all = (np.transpose(x, (0, 2, 1, 3)) for x in (pk2, pv2))  # (B, T, Hkv, D)
    close(out, torch_attention(q2, k_all, v_all, hand_mask(2, 7, causal=False, stride=2)))


def test_sliding_window():
    q, k, v = qkv(s=9, hkv=2)
    (out, _, _) = run_op("attention", q, k, v, window=3)
    close(out, torch_attention(q, k, v, hand_mask(9, 9, window=3)))
    # Mistral's convention: query i sees keys i-2, i-1, i (window 3 includes itself).
    band = torch.ones(9, 9, dtype=torch.bool).tril().triu(-2)
    close(out, sdpa(q, k, v, attn_mask=band))


def test_prefix_lm():
    q, k, v = qkv(s=6)
    prefix = np.array([3, 0], dtype=np.int64)
    (out, _, _) = run_op("attention", q, k, v, None, None, None, None, prefix)
    close(out, torch_attention(q, k, v, hand_mask(6, 6, 2, prefix_len=prefix)))
    # Row 1 (prefix 0) is plain causal; row 0 sees all of its first 3 tokens.
    close(out[1], sdpa(q[1:], k[1:], v[1:], is_causal=True)[0])
    assert (
        np.abs(out[0, :2] - sdpa(q[:1], k[:1], v[:1], is_causal=True)[0, :2].numpy()).max() > 1e-3
    )


def test_padding_key_mask_and_fully_masked_rows():
    q, k, v = qkv(s=5)
    key_mask = np.array([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=np.int64)  # row 1 left-padded
    (out, _, _) = run_op("attention", q, k, v, None, None, key_mask)
    close(out, torch_attention(q, k, v, hand_mask(5, 5, 2, key_mask=key_mask)))
    close(out[1, :2], np.zeros((2, 4, 8)), atol=0)  # padded queries see no key: zeros, not NaN
    bool_mask = T(key_mask).bool()[:, None, None, :] & torch.ones(5, 5, dtype=torch.bool).tril()
    close(out[:, 2:], sdpa(q, k, v, attn_mask=bool_mask)[:, 2:])


def test_bias_input():
    q, k, v = qkv()
    bias = randn(RNG, 2, 4, 5, 5)
    (out, _, _) = run_op("attention", q, k, v, None, None, None, bias)
    close(out, torch_attention(q, k, v, hand_mask(5, 5), bias=bias))
    causal = torch.zeros(5, 5).masked_fill(
        ~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf")
    )
    close(out, sdpa(q, k, v, attn_mask=T(bias) + causal))


def test_causal_with_past_is_bottom_right_aligned():
    q, k, v = qkv(s=3, hkv=2)
    past_k, past_v = randn(RNG, 2, 2, 4, 8), randn(RNG, 2, 2, 4, 8)
    out, pk, pv = run_op("attention", q, k, v, past_k, past_v)
    k_all = torch.cat([T(past_k), T(k).transpose(1, 2)], dim=2)
    v_all = torch.cat([T(past_v), T(v).transpose(1, 2)], dim=2)
    close(pk, k_all)
    close(pv, v_all)
    lower_right = torch.ones(3, 7, dtype=torch.bool).tril(diagonal=4)
    want = F.scaled_dot_product_attention(
        T(q).transpose(1, 2), k_all, v_all, attn_mask=lower_right, enable_gqa=True
    )
    close(out, want.transpose(1, 2))


@pytest.mark.parametrize(
    "attrs,extra",
    [
        ({}, {}),
        ({"window": 4}, {}),
        ({"softcap": 3.0, "scale": 0.2}, {}),
        ({}, {"key_mask": True}),
        ({}, {"prefix": True}),
    ],
    ids=["causal", "window", "softcap", "padding", "prefix"],
)
def test_decode_equals_full(attrs, extra):
    """Token-by-token through the cache gives the same rows as one full call."""
    s, hkv = 7, 2
    q, k, v = qkv(s=s, hkv=hkv)
    mask = (
        np.array([[1] * s, [0, 0] + [1] * (s - 2)], dtype=np.int64)
        if extra.get("key_mask")
        else None
    )
    prefix = np.array([4, 2], dtype=np.int64) if extra.get("prefix") else None
    (full, _, _) = run_op("attention", q, k, v, None, None, mask, None, prefix, **attrs)
    past_k = np.zeros((2, hkv, 0, 8), np.float32)
    past_v = np.zeros((2, hkv, 0, 8), np.float32)
    for t in range(s):
        step_mask = None if mask is None else mask[:, : t + 1]
        out, past_k, past_v = run_op(
            "attention",
            q[:, t : t + 1],
            k[:, t : t + 1],
            v[:, t : t + 1],
            past_k,
            past_v,
            step_mask,
            None,
            prefix,
            **attrs,
        )
        if (
            prefix is None
        ):  # a prefix-LM decodes only past its prefix; earlier rows differ by design
            close(out[:, 0], full[:, t])
        else:
            rows = [b for b in range(2) if t >= prefix[b]]
            close(out[rows, 0], full[rows, t])
    close(past_k, T(k).transpose(1, 2))


def hf_mask(mask_function, batch: int, sq: int, total: int) -> torch.Tensor:
    """Evaluate one of transformers' mask functions (the code its models run), queries at past+i."""
    fn = masking_utils.add_offsets_to_mask_function(mask_function, total - sq, 0)
    b, q, kv = torch.meshgrid(
        torch.arange(batch), torch.arange(sq), torch.arange(total), indexing="ij"
    )
    return fn(b, 0, q, kv)[:, None]  # (B, 1, Sq, T)


@pytest.mark.parametrize("window", [0, 1, 3])
@pytest.mark.parametrize("past", [0, 4])
def test_masks_agree_with_transformers_mask_functions(window, past):
    sq, total, hkv = 3, 3 + past, 2
    key_mask = np.ones((2, total), np.int64)
    key_mask[1, :2] = 0  # left padding in row 1
    causal = (
        masking_utils.sliding_window_causal_mask_function(window)
        if window
        else masking_utils.causal_mask_function
    )
    fn = masking_utils.and_masks(causal, masking_utils.padding_mask_function(T(key_mask).bool()))
    allowed = hf_mask(fn, 2, sq, total)
    assert torch.equal(allowed, hand_mask(sq, total, 2, window=window, key_mask=key_mask))
    q, k, v = qkv(s=sq, hkv=hkv)
    past_k, past_v = randn(RNG, 2, hkv, past, 8), randn(RNG, 2, hkv, past, 8)
    out, pk, pv = run_op("attention", q, k, v, past_k, past_v, key_mask, window=window)
    close(out, torch_attention(q, T(pk).transpose(1, 2), T(pv).transpose(1, 2), allowed))


def test_attention_type_errors_name_the_problem():
    q, k, v = qkv(hq=4, hkv=3)
    with pytest.raises(IRError, match="multiple of KV heads"):
        run_op("attention", q, k[:, :, :3], v[:, :, :3])
    q, k, v = qkv()
    with pytest.raises(IRError, match="past_key and past_value come together"):
        run_op("attention", q, k, v, randn(RNG, 2, 4, 3, 8))
    with pytest.raises(IRError, match=r"key_mask must be \[batch, past\+seq\]"):
        run_op("attention", q, k, v, None, None, np.ones((2, 4), np.int64))


# -- position biases ------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [8, 6, 12, 5])
def test_alibi_matches_bloom(heads):
    mask = np.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [1, 1, 0, 1, 1, 0]], dtype=np.int64)
    (bias,) = run_op("alibi", mask, num_heads=heads)
    want = build_alibi_tensor(T(mask), heads, torch.float32).reshape(3, heads, 1, 6)
    close(bias, want, rtol=0, atol=1e-6)


def test_alibi_as_attention_bias_equals_relative_distance():
    # slope·j and slope·(j - i) give the same softmax: BLOOM's form is the paper's.
    q, k, v = qkv(hq=4, hkv=4, s=5)
    mask = np.ones((2, 5), np.int64)
    (bias,) = run_op("alibi", mask, num_heads=4)
    (out, _, _) = run_op("attention", q, k, v, None, None, mask, bias)
    slopes = torch.tensor([2.0 ** (-8 * (h + 1) / 4) for h in range(4)])
    distance = torch.arange(5)[None, :] - torch.arange(5)[:, None]
    close(out, torch_attention(q, k, v, hand_mask(5, 5), bias=slopes[:, None, None] * distance))


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (16, 20), (8, 1000)])
def test_t5_buckets_match_transformers(bidirectional, num_buckets, max_distance):
    sq, past, heads = 40, 300, 3
    total = past + sq
    table = randn(RNG, num_buckets, heads)
    x, mask = np.zeros((2, sq, 1), np.float32), np.ones((2, total), np.int64)
    (bias,) = run_op(
        "relative_position_bias",
        x,
        mask,
        table,
        bidirectional=bidirectional,
        max_distance=max_distance,
    )
    # HF T5: relative = memory_position - context_position, queries at past+i.
    relative = torch.arange(total)[None, :] - (past + torch.arange(sq))[:, None]
    buckets = T5Attention._relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    want = T(table)[buckets].permute(2, 0, 1)[None].expand(2, -1, -1, -1)
    close(bias, want, rtol=0, atol=0)


# -- latent attention (DeepSeek-V2 MLA) ------------------------------------------------------


def torch_mla(q, latent, k_rope, kv_b, heads, nope, v_dim, scale, past_latent=None, key_mask=None):
    """DeepSeek-V2's attention, cache expanded: k = [c·W_kᵀ, k_pe], v = c·W_vᵀ, then sdpa."""
    rank = latent.shape[-1]
    c, kr = T(latent), T(k_rope)[:, :, 0]
    if past_latent is not None:
        c = torch.cat([T(past_latent)[..., :rank], c], dim=1)
        kr = torch.cat([T(past_latent)[..., rank:], kr], dim=1)
    b, total = c.shape[:2]
    kv = (
        F.linear(c, T(kv_b)).view(b, total, heads, nope + v_dim).transpose(1, 2)
    )  # (B, H, T, nope+v)
    k_nope, value = kv.split([nope, v_dim], dim=-1)
    k_pe = kr[:, None].expand(b, heads, total, kr.shape[-1])
    key = torch.cat([k_nope, k_pe], dim=-1)
    query = T(q).transpose(1, 2)
    sq = query.shape[2]
    mask = torch.ones(sq, total, dtype=torch.bool).tril(diagonal=total - sq)
    if key_mask is not None:
        mask = mask & T(key_mask).bool()[:, None, None, :]
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale)
    return out.transpose(1, 2)


def test_latent_attention_matches_deepseek_mla():
    b, s, h, nope, rope, v_dim, rank = 2, 5, 3, 8, 4, 6, 10
    q = randn(RNG, b, s, h, nope + rope)
    latent, k_rope = randn(RNG, b, s, rank), randn(RNG, b, s, 1, rope)
    kv_b = randn(RNG, h * (nope + v_dim), rank, scale=0.3)
    out, cache = run_op(
        "latent_attention", q, latent, k_rope, kv_b, nope_dim=nope, v_dim=v_dim, scale=0.3
    )
    close(out, torch_mla(q, latent, k_rope, kv_b, h, nope, v_dim, 0.3))
    close(cache, np.concatenate([latent, k_rope[:, :, 0]], -1), rtol=0, atol=0)
    # Default scale is 1/sqrt(nope+rope), DeepSeek's q_head_dim**-0.5.
    (out_default, _) = run_op(
        "latent_attention", q, latent, k_rope, kv_b, nope_dim=nope, v_dim=v_dim
    )
    close(out_default, torch_mla(q, latent, k_rope, kv_b, h, nope, v_dim, (nope + rope) ** -0.5))


def test_latent_attention_decode_equals_full():
    b, s, h, nope, rope, v_dim, rank = 1, 6, 2, 4, 4, 4, 6
    q = randn(RNG, b, s, h, nope + rope)
    latent, k_rope = randn(RNG, b, s, rank), randn(RNG, b, s, 1, rope)
    kv_b = randn(RNG, h * (nope + v_dim), rank, scale=0.3)
    attrs = {"nope_dim": nope, "v_dim": v_dim}
    (full, _) = run_op("latent_attention", q, latent, k_rope, kv_b, **attrs)
    cache = np.zeros((b, 0, rank + rope), np.float32)
    for t in range(s):
        out, cache = run_op(
            "latent_attention",
            q[:, t : t + 1],
            latent[:, t : t + 1],
            k_rope[:, t : t + 1],
            kv_b,
            cache,
            **attrs,
        )
        close(out[:, 0], full[:, t])
    past = cache[:, :4]
    (tail, _) = run_op(
        "latent_attention", q[:, 4:], latent[:, 4:], k_rope[:, 4:], kv_b, past, **attrs
    )
    close(
        tail,
        torch_mla(
            q[:, 4:],
            latent[:, 4:],
            k_rope[:, 4:],
            kv_b,
            h,
            nope,
            v_dim,
            (nope + rope) ** -0.5,
            past_latent=past,
        ),
    )


def test_latent_attention_with_padding():
    b, s, h, nope, rope, v_dim, rank = 2, 5, 2, 4, 4, 4, 6
    q = randn(RNG, b, s, h, nope + rope)
    latent, k_rope = randn(RNG, b, s, rank), randn(RNG, b, s, 1, rope)
    kv_b = randn(RNG, h * (nope + v_dim), rank, scale=0.3)
    mask = np.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=np.int64)
    out, _ = run_op(
        "latent_attention", q, latent, k_rope, kv_b, None, mask, nope_dim=nope, v_dim=v_dim
    )
    want = torch_mla(q, latent, k_rope, kv_b, h, nope, v_dim, (nope + rope) ** -0.5, key_mask=mask)
    close(out[mask == 1], want[T(mask) == 1])
    close(out[0, 0], np.zeros((h, v_dim)), atol=0)
