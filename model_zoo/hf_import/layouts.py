"""Checkpoint layouts that differ from irgraph's: fused QKV packings and stacked experts.

A fused QKV projection has rows `[q | k | v]` interleaved differently per
model family (rows are output features; a bias is packed like the rows):

  heads       per head: [q_h, k_h, v_h]
              GPT-NeoX, BLOOM, Falcon-40B-style MHA, StarCoder MHA
  blocks      [all q heads, all k heads, all v heads]
              Falcon-7B multi-query, StarCoder (MQA)
  kv_groups   per KV group: [q heads of the group.., k, v]
              Falcon new decoder architecture (GQA)
  mp4_qvk     4 model-parallel shards, each [q, v, k] (note the order)
              CodeGen

Each split returns views where it can (no copy of a memory-mapped tensor).
"""

from __future__ import annotations

import numpy as np

from irgraph.errors import ConfigError

PACKINGS = ("heads", "blocks", "kv_groups", "mp4_qvk")


def split_qkv(
    packing: str, fused: np.ndarray, heads: int, kv_heads: int, head_dim: int, where: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q [heads*hd, ...], k [kv*hd, ...], v [kv*hd, ...]) of a fused weight or bias, rows first."""
    rest = fused.shape[1:]
    rows = (heads + 2 * kv_heads) * head_dim
    if fused.shape[0] != rows:
        raise ConfigError(
            "fused QKV projection has the wrong number of rows",
            expected=rows,
            got=fused.shape[0],
            where=where,
        )
    if packing == "heads":
        per = fused.reshape(heads, 3, head_dim, *rest)  # (H, 3, hd, ...)
        q, k, v = (per[:, j].reshape(heads * head_dim, *rest) for j in range(3))
        return q, k, v
    if packing == "blocks":
        nq, nkv = heads * head_dim, kv_heads * head_dim
        return fused[:nq], fused[nq : nq + nkv], fused[nq + nkv :]
    if packing == "kv_groups":
        group = heads // kv_heads
        per = fused.reshape(
            kv_heads, group + 2, head_dim, *rest
        )  # (G, q-per-group + k + v, hd, ...)
        return (
            per[:, :group].reshape(heads * head_dim, *rest),
            per[:, group].reshape(kv_heads * head_dim, *rest),
            per[:, group + 1].reshape(kv_heads * head_dim, *rest),
        )
    if packing == "mp4_qvk":
        if heads % 4:
            raise ConfigError(
                "CodeGen's 4-way packed QKV needs heads divisible by 4", got=heads, where=where
            )
        per = fused.reshape(4, 3, heads * head_dim // 4, *rest)  # (mp, [q, v, k], local, ...)
        q, v, k = (per[:, j].reshape(heads * head_dim, *rest) for j in range(3))
        return q, k, v
    raise ConfigError(
        "unknown QKV packing", expected=" | ".join(PACKINGS), got=packing, where=where
    )


def stack_experts(tensors: list[np.ndarray]) -> np.ndarray:
    """Per-expert [out, in] matrices -> one [experts, out, in] tensor (one copy, written once)."""
    return np.stack([np.asarray(t) for t in tensors])


def split_gate_up(fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """transformers 5's fused experts.gate_up_proj [E, 2F, H] -> (gate, up), each [E, F, H]."""
    half = fused.shape[1] // 2
    return fused[:, :half], fused[:, half:]
