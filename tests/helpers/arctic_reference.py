"""Snowflake Arctic in plain torch: the reference for the zoo's Arctic twin (transformers has none).

Written from Snowflake's modelling code, not from irgraph's builder: `ArcticDecoderLayer` with
`parallel_attn_mlp_res`, `ArcticMLP`, `ArcticMoE` and `ArcticAttention` in
vllm/model_executor/models/arctic.py at Snowflake-Labs/vllm@e89e3016c9cd04072b8227c1c34cbdeb494989b6
(the same layer as HF Snowflake/snowflake-arctic-base's modeling_arctic.py):

    h = x + attn(input_layernorm(x))
    out = h + residual_mlp(residual_layernorm(h)) + moe(post_attention_layernorm(x))

The MoE reads the layer's input (pre-attention), the dense residual MLP the attention output, and
the residual MLP is `hidden_size` wide (`ffn_dim = hidden_size if is_residual_mlp`). Experts and
the residual MLP are SwiGLU (w2(silu(w1 x) * w3 x)); the router is a softmax over all experts,
top-k, renormalised. Attention is GQA with rotate-half RoPE and a KV cache.

Module and parameter names are Snowflake's; `from_graph` fills them from a built graph by the
zoo's names, so a weight wired to the wrong role in the builder changes the logits. Everything
runs in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from irgraph.ir import Graph
from irgraph.model_zoo.config import ModelConfig

Cache = list[tuple[torch.Tensor, torch.Tensor]]


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width, dtype=torch.float64))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def _linear(inp: int, out: int) -> nn.Linear:
    return nn.Linear(inp, out, bias=False, dtype=torch.float64)


class SwiGLU(nn.Module):
    """ArcticMLP: w1 is the gate, w3 the up projection, w2 the down projection."""

    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.w1, self.w3, self.w2 = _linear(hidden, ffn), _linear(hidden, ffn), _linear(ffn, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(nn.functional.silu(self.w1(x)) * self.w3(x))


class MoE(nn.Module):
    def __init__(self, hidden: int, ffn: int, experts: int, top_k: int):
        super().__init__()
        self.gate = _linear(hidden, experts)
        self.experts = nn.ModuleList(SwiGLU(hidden, ffn) for _ in range(experts))
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.gate(x), dim=-1)  # (B, S, E)
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)  # (B, S, k)
        weights = weights / weights.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            share = (weights * (chosen == e)).sum(-1, keepdim=True)  # (B, S, 1): 0 if not chosen
            out = out + share * expert(x)
        return out


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.n_kv_heads, cfg.dim_per_head
        self.base = cfg.require_rotary("the Arctic reference").base
        self.q_proj = _linear(cfg.hidden, self.heads * self.head_dim)
        self.k_proj = _linear(cfg.hidden, self.kv_heads * self.head_dim)
        self.v_proj = _linear(cfg.hidden, self.kv_heads * self.head_dim)
        self.o_proj = _linear(self.heads * self.head_dim, cfg.hidden)

    def _rope(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        inv_freq = self.base ** -(
            torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim
        )
        angles = positions[:, None].double() * inv_freq[None]  # (S, hd/2)
        cos = torch.cat((angles, angles), -1).cos()  # (S, hd)
        sin = torch.cat((angles, angles), -1).sin()
        return x * cos + _rotate_half(x) * sin

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        batch, seq, _ = x.shape
        start = 0 if past is None else past[0].shape[2]
        positions = torch.arange(start, start + seq)
        q = self.q_proj(x).view(batch, seq, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = self._rope(q, positions), self._rope(k, positions)  # (B, nh|kv, S, hd)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        group = self.heads // self.kv_heads
        keys, values = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = q @ keys.transpose(-1, -2) / self.head_dim**0.5  # (B, nh, S, past+S)
        total = keys.shape[2]
        future = torch.arange(total)[None, :] > (torch.arange(seq)[:, None] + start)
        scores = scores.masked_fill(future, float("-inf"))
        out = (torch.softmax(scores, dim=-1) @ values).transpose(1, 2).reshape(batch, seq, -1)
        return self.o_proj(out), (k, v)


class DecoderLayer(nn.Module):
    """Snowflake's parallel_attn_mlp_res layer (every layer of Arctic is an MoE layer)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        moe = cfg.require_moe("the Arctic reference")
        self.input_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.residual_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.residual_mlp = SwiGLU(cfg.hidden, cfg.hidden)  # ffn_dim = hidden_size
        self.post_attention_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.block_sparse_moe = MoE(cfg.hidden, moe.expert_ffn, moe.num_experts, moe.top_k)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attn, present = self.self_attn(self.input_layernorm(x), past)
        after_attn = x + attn
        dense = self.residual_mlp(self.residual_layernorm(after_attn))
        routed = self.block_sparse_moe(self.post_attention_layernorm(x))  # the layer's input
        return after_attn + dense + routed, present


class Arctic(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden, dtype=torch.float64)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.lm_head = _linear(cfg.hidden, cfg.vocab_size)

    def forward(self, ids: torch.Tensor, past: Cache | None = None) -> tuple[torch.Tensor, Cache]:
        x, present = self.embed_tokens(ids), []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, None if past is None else past[i])
            present.append(kv)
        return self.lm_head(self.norm(x)), present


def _names(layer: int, experts: int) -> dict[str, str]:
    """Snowflake's parameter name -> the zoo's, for one layer."""
    ours = theirs = f"layers.{layer}"  # the same layer prefix; the module names differ
    table = {
        f"{theirs}.input_layernorm.weight": f"{ours}.attn_norm.weight",
        f"{theirs}.residual_layernorm.weight": f"{ours}.residual_norm.weight",
        f"{theirs}.post_attention_layernorm.weight": f"{ours}.mlp_norm.weight",
        f"{theirs}.residual_mlp.w1.weight": f"{ours}.mlp.gate.weight",
        f"{theirs}.residual_mlp.w3.weight": f"{ours}.mlp.up.weight",
        f"{theirs}.residual_mlp.w2.weight": f"{ours}.mlp.down.weight",
        f"{theirs}.block_sparse_moe.gate.weight": f"{ours}.moe.router.weight",
    }
    for proj in "qkvo":
        table[f"{theirs}.self_attn.{proj}_proj.weight"] = f"{ours}.attn.{proj}.weight"
    for e in range(experts):
        for w, role in (("w1", "gate"), ("w3", "up"), ("w2", "down")):
            table[f"{theirs}.block_sparse_moe.experts.{e}.{w}.weight"] = (
                f"{ours}.moe.experts.{role}[{e}]"
            )
    return table


def from_graph(cfg: ModelConfig, graph: Graph) -> Arctic:
    """The reference with every weight taken from `graph` (each zoo weight used exactly once)."""
    model = Arctic(cfg)
    moe = cfg.require_moe("the Arctic reference")
    table = {
        "embed_tokens.weight": "embed.weight",
        "norm.weight": "norm.weight",
        "lm_head.weight": "lm_head.weight",
    }
    for i in range(cfg.layers):
        table.update(_names(i, moe.num_experts))
    state = {}
    for theirs, ours in table.items():
        name, _, index = ours.partition("[")
        array = graph.weight(name)
        state[theirs] = torch.from_numpy(
            np.asarray(array[int(index[:-1])] if index else array, np.float64)
        )
    model.load_state_dict(state, strict=True)
    used = {ours.partition("[")[0] for ours in table.values()}
    assert used == set(graph.params), sorted(set(graph.params) ^ used)
    return model


def logits(model: Arctic, ids: np.ndarray, decode: bool) -> np.ndarray:
    """The reference's logits: one call, or token by token through its own KV cache."""
    tokens = torch.as_tensor(ids)
    with torch.no_grad():
        if not decode:
            return model(tokens)[0].numpy()
        past, rows = None, []
        for t in range(tokens.shape[1]):
            out, past = model(tokens[:, t : t + 1], past)
            rows.append(out.numpy())
        return np.concatenate(rows, axis=1)
