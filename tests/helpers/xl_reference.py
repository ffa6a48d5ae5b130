"""A float64 Transformer-XL decoder written from Dai et al. 2019 and their released code
(kimiyoung/transformer-xl, pytorch/mem_transformer.py: PositionalEmbedding,
RelPartialLearnableMultiHeadAttn with pre_lnorm, _rel_shift), for the zoo's
`position=transformer_xl` (issue 18 item 5).

It shares nothing with irgraph's lowering: scores are AC + BD with BD realigned by the padding
trick `_rel_shift`, and decoding reuses Transformer-XL's memory (each layer's input hidden
states of the earlier tokens, `mems`), not a KV cache. Pre-LN blocks, a ReLU MLP without
biases, untied head; the weights are the zoo graph's, by its names.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _rel_shift(x: torch.Tensor) -> torch.Tensor:
    """mem_transformer.py's _rel_shift: row i of x [qlen, klen, ...] moves left by qlen-1-i."""
    zero_pad = torch.zeros((x.size(0), 1, *x.size()[2:]), dtype=x.dtype)
    padded = torch.cat([zero_pad, x], dim=1).view(x.size(1) + 1, x.size(0), *x.size()[2:])
    return padded[1:].view_as(x)


def _pos_emb(klen: int, d_model: int) -> torch.Tensor:
    """PositionalEmbedding of pos_seq = klen-1 .. 0: [klen, d_model] = [sin, cos]."""
    inv_freq = 1 / (10000 ** (torch.arange(0.0, d_model, 2.0, dtype=torch.float64) / d_model))
    sinusoid = torch.outer(torch.arange(klen - 1, -1, -1.0, dtype=torch.float64), inv_freq)
    return torch.cat([sinusoid.sin(), sinusoid.cos()], dim=-1)


class XlReference:
    def __init__(self, weights: dict[str, np.ndarray], layers: int, heads: int, eps: float):
        self.w = {k: torch.from_numpy(v.astype(np.float64)) for k, v in weights.items()}
        self.layers, self.heads, self.eps = layers, heads, eps

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        d = x.shape[-1]
        return F.layer_norm(x, (d,), self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _attn(self, x: torch.Tensor, mems: torch.Tensor, i: int) -> torch.Tensor:
        """x [qlen, B, d], mems [mlen, B, d] (layer inputs of earlier tokens) -> x + attn."""
        p, w, n = f"layers.{i}", self.w, self.heads
        qlen, bsz, d_model = x.shape
        cat = self._ln(torch.cat([mems, x], 0), f"{p}.attn_norm")
        klen = cat.shape[0]
        qkv = torch.cat([w[f"{p}.attn.{m}.weight"] for m in "qkv"])  # qkv_net
        heads_q, heads_k, heads_v = F.linear(cat, qkv).chunk(3, dim=-1)
        d_head = heads_q.shape[-1] // n
        q = heads_q[-qlen:].view(qlen, bsz, n, d_head)
        k = heads_k.view(klen, bsz, n, d_head)
        v = heads_v.view(klen, bsz, n, d_head)
        r_k = F.linear(_pos_emb(klen, d_model), w[f"{p}.attn.r.weight"]).view(klen, n, d_head)
        ac = torch.einsum("ibnd,jbnd->ijbn", q + w[f"{p}.attn.r_w_bias"], k)
        bd = _rel_shift(torch.einsum("ibnd,jnd->ijbn", q + w[f"{p}.attn.r_r_bias"], r_k))
        score = (ac + bd) * (1 / d_head**0.5)
        mlen = klen - qlen
        future = torch.triu(torch.ones(qlen, klen, dtype=torch.bool), diagonal=1 + mlen)
        prob = score.masked_fill(future[:, :, None, None], float("-inf")).softmax(dim=1)
        out = torch.einsum("ijbn,jbnd->ibnd", prob, v).reshape(qlen, bsz, n * d_head)
        return x + F.linear(out, w[f"{p}.attn.o.weight"])

    def _mlp(self, x: torch.Tensor, i: int) -> torch.Tensor:
        p, w = f"layers.{i}", self.w
        h = self._ln(x, f"{p}.mlp_norm")
        return x + F.linear(F.relu(F.linear(h, w[f"{p}.mlp.up.weight"])), w[f"{p}.mlp.down.weight"])

    def forward(
        self, ids: np.ndarray, mems: list[torch.Tensor] | None = None
    ) -> tuple[np.ndarray, list[torch.Tensor]]:
        """Logits [B, S, V] for ids [B, S] after the tokens held in `mems`; the new mems."""
        x = self.w["embed.weight"][torch.from_numpy(ids)].transpose(0, 1)  # (S, B, d)
        bsz, d = x.shape[1], x.shape[2]
        mems = mems or [torch.zeros(0, bsz, d, dtype=torch.float64)] * self.layers
        new_mems = []
        for i in range(self.layers):
            new_mems.append(torch.cat([mems[i], x], 0))  # this layer's inputs, kept whole
            x = self._mlp(self._attn(x, mems[i], i), i)
        logits = F.linear(self._ln(x, "norm"), self.w["lm_head.weight"])
        return logits.transpose(0, 1).numpy(), new_mems
