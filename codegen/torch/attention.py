"""Torch lowerings of the position and attention ops: rotary, attention, ALiBi, T5 bias, MLA.

They mirror `irgraph.ops.rotary` and `irgraph.ops.attention` (the meaning of
each op) and share those modules' constant tables (inverse frequencies, ALiBi
slopes), so the two can only differ in float rounding. Masks are built from
tensor shapes, so `torch.export` sees symbolic `seq` and `past`. MoE: `moe.py`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from irgraph.codegen.torch.lowerings import TorchContext, attention_scale, f32, lowers
from irgraph.ir import Node
from irgraph.ops.attention import alibi_slopes, xl_inv_frequencies
from irgraph.ops.kv_quant import FLOOR, QMAX, reduce_axes
from irgraph.ops.ring_attention import ring_sources, ring_visible
from irgraph.ops.rotary import inv_frequencies, rotary_attention_factor

# -- rotary -----------------------------------------------------------------------------------


@lowers("rotary")
def _rotary(
    ctx: TorchContext, node: Node, x: torch.Tensor, position_ids: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    a = node.attrs
    scaling, factor, interleaved = a["scaling"], a["factor"], a["interleaved"]
    rd = a["rotary_dim"] or x.shape[3]
    # Dynamic NTK rescales with the longest position in the batch: a data-dependent constant.
    longest = (
        int(position_ids.max()) + 1 if scaling == "dynamic_ntk" and position_ids.numel() else 0
    )
    inv = inv_frequencies(
        rd,
        a["base"],
        scaling,
        factor,
        a["original_max_position"],
        a["low_freq_factor"],
        a["high_freq_factor"],
        a["beta_fast"],
        a["beta_slow"],
        longest,
    )
    inv_t = torch.from_numpy(inv.astype(np.float32)).to(x.device)
    angles = position_ids.float()[..., None] * inv_t  # (B, S, rd/2), fp32 as the reference
    gain = rotary_attention_factor(
        scaling, factor, a["mscale"], a["mscale_all_dim"], a["attention_factor"]
    )
    c = (torch.cos(angles) * gain)[:, :, None, :]  # (B, S, 1, rd/2)
    s = (torch.sin(angles) * gain)[:, :, None, :]
    x = f32(x)
    rot = x if rd == x.shape[3] else x[..., :rd]
    # unbind/stack rather than slices: their backward writes each half once instead of zero-filling.
    pairs = rot.unflatten(
        -1, (rd // 2, 2) if interleaved else (2, rd // 2)
    )  # pairs (2i, 2i+1) or (i, i+rd/2)
    x1, x2 = pairs.unbind(-1 if interleaved else -2)
    out = torch.stack([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1 if interleaved else -2).flatten(-2)
    return (out if rd == x.shape[3] else torch.cat([out, x[..., rd:]], dim=-1),)


# -- attention --------------------------------------------------------------------------------

_UNPADDED = False  # see unpadded_self_attention


@contextmanager
def unpadded_self_attention() -> Iterator[None]:
    """Promise that every attention mask is all ones (no padding), as in training batches.

    Plain causal self-attention then takes the kernel that skips masked blocks,
    also under torch.compile, where the eager check of the mask would break the graph.
    """
    global _UNPADDED
    old, _UNPADDED = _UNPADDED, True
    try:
        yield
    finally:
        _UNPADDED = old


def visible(
    sq: int,
    total: int,
    key_mask: torch.Tensor | None,
    prefix_len: torch.Tensor | None,
    causal: bool,
    window: int,
    device: torch.device,
    stride: int = 0,
) -> torch.Tensor:
    """Boolean [batch|1, 1, sq, total]: which key each query may attend to.

    See irgraph.ops.attention.
    """
    qpos = (total - sq) + torch.arange(sq, device=device)[:, None]  # absolute query positions
    kpos = torch.arange(total, device=device)[None, :]
    allowed = torch.ones((1, 1, sq, total), dtype=torch.bool, device=device)
    if causal:
        rule = kpos <= qpos
        if prefix_len is not None:
            rule = rule[None] | (kpos[None] < prefix_len.reshape(-1, 1, 1))  # (B, Sq, T)
            allowed = allowed & rule[:, None]
        else:
            allowed = allowed & rule
    if window:
        allowed = allowed & ((qpos - kpos) < window)
    if stride:
        allowed = allowed & ((qpos - kpos) % stride == 0)
    if key_mask is not None:
        allowed = allowed & key_mask.bool()[:, None, None, :]
    return allowed


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b; exported as a broadcast product and sum, because matmul's special case for rows
    of 1 makes torch.export pin `seq != 1` (and lose decode)."""
    if torch.compiler.is_exporting():
        return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)
    return torch.matmul(a, b)


def sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    prefix_len: torch.Tensor | None = None,
    causal: bool = True,
    window: int = 0,
    scale: float | None = None,
    softcap: float = 0.0,
    stride: int = 0,
) -> torch.Tensor:
    """Attention over BNSH tensors, k/v possibly with fewer (grouped) heads.

    Fully masked rows give 0.
    """
    hq, sq, d = q.shape[1], q.shape[2], q.shape[3]
    hkv, total = k.shape[1], k.shape[2]
    if hq != hkv:
        k = k.repeat_interleave(hq // hkv, dim=1)  # (B, Hq, T, D)
        v = v.repeat_interleave(hq // hkv, dim=1)
    k, v = k.to(q.dtype), v.to(q.dtype)
    scale = attention_scale(d, scale)
    tracing = torch.compiler.is_compiling()
    # A data-dependent check of the mask would break a traced graph: when tracing, only the
    # promise counts.
    unpadded = key_mask is None or _UNPADDED or (not tracing and bool(key_mask.all()))
    if (
        unpadded
        and causal
        and bias is None
        and not softcap
        and not window
        and not stride
        and prefix_len is None
        and sq == total
    ):
        # Plain causal self-attention (training, prefill): the kernel skips the masked blocks.
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    allowed = visible(sq, total, key_mask, prefix_len, causal, window, q.device, stride)
    any_visible = allowed.any(dim=-1, keepdim=True)
    # Rows with no visible key attend everywhere and are zeroed after: finite values and gradients.
    allowed = allowed | ~any_visible
    # SDPA has no softcap, and its masked and dv != d forms export through matmul (see _bmm).
    if softcap or v.shape[-1] != d or torch.compiler.is_exporting():
        scores = _bmm(q, k.transpose(-1, -2)) * scale  # (B, Hq, Sq, T)
        if softcap:
            scores = softcap * torch.tanh(scores / softcap)
        if bias is not None:
            scores = scores + bias.to(scores.dtype)
        scores = scores.masked_fill(~allowed, float("-inf"))
        out = _bmm(torch.softmax(scores, dim=-1), v)
    else:
        mask = allowed if bias is None else torch.where(allowed, bias.to(q.dtype), float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out * any_visible if tracing or not bool(any_visible.all()) else out


@lowers("attention")
def _attention(
    ctx: TorchContext,
    node: Node,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    past_key: torch.Tensor | None,
    past_value: torch.Tensor | None,
    key_mask: torch.Tensor | None,
    bias: torch.Tensor | None,
    prefix_len: torch.Tensor | None,
) -> tuple[torch.Tensor, ...]:
    a = node.attrs
    k_all = f32(k).transpose(1, 2)  # (B, Hkv, S, D)
    v_all = f32(v).transpose(1, 2)
    if past_key is not None and past_value is not None:
        k_all = torch.cat([past_key.to(k_all.dtype), k_all], dim=2)  # present = concat(past, new)
        v_all = torch.cat([past_value.to(v_all.dtype), v_all], dim=2)
    out = sdpa(
        f32(q).transpose(1, 2),
        k_all,
        v_all,
        key_mask,
        bias,
        prefix_len,
        a["causal"],
        a["window"],
        a["scale"],
        a["softcap"],
        a["stride"],
    )
    return out.transpose(1, 2), k_all, v_all


@lowers("alibi")
def _alibi(ctx: TorchContext, node: Node, key_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    num_heads = node.attrs["num_heads"]
    mask = key_mask.float()
    positions = (torch.cumsum(mask, dim=-1) - 1) * mask  # (B, T): position among unpadded tokens
    slopes = torch.from_numpy(alibi_slopes(num_heads)).to(key_mask.device)
    return (slopes[None, :, None, None] * positions[:, None, None, :],)


def t5_buckets(
    relative: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> torch.Tensor:
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).long() * num_buckets
        relative = relative.abs()
    else:
        relative = -torch.clamp(relative, max=0)
    max_exact = num_buckets // 2
    large = (
        max_exact
        + (
            torch.log(relative.float() / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).long()
    )
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(relative < max_exact, relative, large)


@lowers("relative_position_bias")
def _relative_position_bias(
    ctx: TorchContext,
    node: Node,
    x: torch.Tensor,
    key_mask: torch.Tensor,
    table: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    bidirectional, max_distance = node.attrs["bidirectional"], node.attrs["max_distance"]
    sq, total = x.shape[1], key_mask.shape[1]
    qpos = (total - sq) + torch.arange(sq, device=x.device)
    relative = torch.arange(total, device=x.device)[None, :] - qpos[:, None]  # (Sq, T)
    buckets = t5_buckets(relative, bidirectional, table.shape[0], max_distance)
    bias = F.embedding(buckets, table.float()).permute(2, 0, 1)  # (H, Sq, T)
    return (bias[None].expand(x.shape[0], -1, -1, -1),)


@lowers("xl_relative_bias")
def _xl_relative_bias(
    ctx: TorchContext, node: Node, q: torch.Tensor, key_mask: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """One projected sinusoid per distance (past+2·seq-1 of them), then a gather per (i, j)."""
    b, s, h, d = q.shape
    total = key_mask.shape[1]
    dev = q.device
    inv = torch.from_numpy(xl_inv_frequencies(weight.shape[1])).float().to(dev)
    dist = torch.arange(total - 1, -s, -1, device=dev).float()  # distance of row l: total-1-l
    angles = dist[:, None] * inv[None, :]  # (L, width/2)
    r = F.linear(torch.cat([angles.sin(), angles.cos()], dim=-1), f32(weight)).reshape(-1, h, d)
    scores = torch.einsum("bihd,lhd->bhil", f32(q), r)  # (B, H, S, L)
    # query i, key j: distance past+i-j sits at row total-1-(past+i-j) = s-1-i+j
    index = (s - 1) - torch.arange(s, device=dev)[:, None] + torch.arange(total, device=dev)
    index = index[None, None].expand(b, h, -1, -1)
    return (torch.gather(scores, 3, index) * node.attrs["scale"],)


@lowers("latent_attention")
def _latent_attention(
    ctx: TorchContext,
    node: Node,
    q: torch.Tensor,
    latent: torch.Tensor,
    k_rope: torch.Tensor,
    kv_b: torch.Tensor,
    past_latent: torch.Tensor | None,
    key_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, ...]:
    a = node.attrs
    nope_dim, v_dim, scale, causal = a["nope_dim"], a["v_dim"], a["scale"], a["causal"]
    b, h, dq = q.shape[0], q.shape[2], q.shape[3]
    rank = latent.shape[2]
    new = torch.cat([f32(latent), f32(k_rope)[:, :, 0, :]], dim=-1)  # (B, S, R+rope)
    cache = new if past_latent is None else torch.cat([past_latent.to(new.dtype), new], dim=1)
    kr = cache[..., rank:]
    # Expand from the whole cache row with zero weights on its rope part: a linear on the sliced
    # latent (a strided view) would make torch.export pin `past+seq != 1`.
    w = torch.cat(
        [f32(kv_b), kv_b.new_zeros(kv_b.shape[0], cache.shape[-1] - rank, dtype=torch.float32)],
        dim=1,
    )
    w = w.reshape(h, nope_dim + v_dim, -1)  # per head: nope rows, then value rows
    t = cache.shape[1]
    k_nope = F.linear(cache, w[:, :nope_dim].reshape(h * nope_dim, -1)).reshape(b, t, h, nope_dim)
    v = F.linear(cache, w[:, nope_dim:].reshape(h * v_dim, -1)).reshape(
        b, t, h, v_dim
    )  # (B, T, H, v)
    k = torch.cat([k_nope, kr[:, :, None, :].expand(-1, -1, h, -1).to(k_nope.dtype)], dim=-1)
    out = sdpa(
        f32(q).transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        key_mask=key_mask,
        causal=causal,
        scale=attention_scale(dq, scale),
    )
    return out.transpose(1, 2), cache


@lowers("kv_quantize")
def _kv_quantize(
    ctx: TorchContext, node: Node, x: torch.Tensor, scale: torch.Tensor | None
) -> tuple[torch.Tensor, ...]:
    """New keys/values for a quantized cache (irgraph/ops/kv_quant.py); torch.round is
    half-to-even, as the reference. No gradient flows through the rounding."""
    dtype, granularity = node.attrs["dtype"], node.attrs["granularity"]
    xt = f32(x).permute(0, 2, 1, 3)
    if scale is None:
        amax = xt.abs().amax(dim=reduce_axes(granularity), keepdim=True)
        scale = (amax / QMAX[dtype]).clamp_min(float(FLOOR))
    scaled = xt / scale
    if dtype == "i8":
        return torch.round(scaled).clamp(-127, 127).to(torch.int8), scale
    return scaled.clamp(-QMAX[dtype], QMAX[dtype]).to(torch.float8_e4m3fn), scale


@lowers("ring_attention")
def _ring_attention(
    ctx: TorchContext,
    node: Node,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    past_key: torch.Tensor,
    past_value: torch.Tensor,
    key_mask: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """irgraph/ops/ring_attention.py: the key positions and ring sources as the reference
    computes them (they depend only on sizes), the attention in torch."""
    a = node.attrs
    window, seq = a["window"], q.shape[1]
    t = key_mask.shape[1] - seq
    k_all = torch.cat([f32(past_key), f32(k).transpose(1, 2)], dim=2)  # (B, Hkv, W+S, D)
    v_all = torch.cat([f32(past_value), f32(v).transpose(1, 2)], dim=2)
    allowed = torch.from_numpy(ring_visible(key_mask.cpu().numpy(), window, seq)).to(q.device)
    group = q.shape[2] // k.shape[2]
    keys, values = k_all.repeat_interleave(group, 1), v_all.repeat_interleave(group, 1)
    scores = _bmm(f32(q).transpose(1, 2), keys.transpose(-1, -2))
    scores = scores * attention_scale(q.shape[3], a["scale"])
    if a["softcap"]:
        scores = a["softcap"] * torch.tanh(scores / a["softcap"])
    any_visible = allowed.any(dim=-1, keepdim=True)
    scores = scores.masked_fill(~(allowed | ~any_visible), float("-inf"))
    out = _bmm(torch.softmax(scores, dim=-1), values) * any_visible
    sources = torch.from_numpy(ring_sources(t, window, seq)).to(q.device)
    return out.transpose(1, 2), k_all[:, :, sources], v_all[:, :, sources]


@lowers("paged_attention")
def _paged_attention(
    ctx: TorchContext,
    node: Node,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_pages: torch.Tensor,
    value_pages: torch.Tensor,
    block_table: torch.Tensor,
    cache_lens: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """irgraph/ops/paged_attention.py: index_put writes the new tokens into the pool, indexing
    by the block table reads each row's pages, the causal rule masks by row length."""
    a = node.attrs
    batch, seq = q.shape[:2]
    block = key_pages.shape[1]
    pos = cache_lens.long()[:, None] + torch.arange(seq, device=q.device)  # (B, S)
    page = torch.gather(block_table.long(), 1, pos // block)
    where = (page.reshape(-1), (pos % block).reshape(-1))

    def write(pool: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        return f32(pool).index_put(where, f32(new).reshape(batch * seq, *new.shape[2:]))

    def read(pool: torch.Tensor) -> torch.Tensor:
        rows = pool[block_table.long()]  # (B, blocks, block, H, D)
        return rows.reshape(batch, -1, *rows.shape[3:]).transpose(1, 2)  # (B, H, T, D)

    present_k, present_v = write(key_pages, k), write(value_pages, v)
    keys, values = read(present_k), read(present_v)
    allowed = torch.arange(keys.shape[2], device=q.device)[None, None, :] <= pos[:, :, None]
    group = q.shape[2] // k.shape[2]
    scores = _bmm(f32(q).transpose(1, 2), keys.repeat_interleave(group, 1).transpose(-1, -2))
    scores = scores * attention_scale(q.shape[3], a["scale"])
    if a["softcap"]:
        scores = a["softcap"] * torch.tanh(scores / a["softcap"])
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))  # a row always sees itself
    out = _bmm(torch.softmax(scores, dim=-1), values.repeat_interleave(group, 1))
    return out.transpose(1, 2), present_k, present_v
