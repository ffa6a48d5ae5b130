"""A file's tensor layout back to the IR's, before the tensors are mapped to parameters.

The GGUF writer (`codegen/gguf/tensors.py`) and llama.cpp's converter change the layout in
three ways that lose nothing but that the IR does not share; each is undone here:

    fused q/k/v     `blk.{i}.attn_qkv` stacks the q, k and v rows (GPT-NeoX, Falcon, BLOOM,
                    GPT-2, StarCoder): split back into three row views of the same tensor,
                    sizes from the head counts (whole rows: quantized rows stay exact)
    zero biases     builders that require biases get zeros where the model has none: a bias
                    family that is zero in every tensor is dropped (the same numbers)
    duplicated head a tied head written twice (GPT-NeoX requires `output.weight`): an output
                    tensor byte-identical to the embedding is dropped (tied)

Views keep the tensor interface the importer reads (`name`, `tensor_type`, `shape` in ggml
order, `data`), so everything downstream treats a split part as a tensor of its own; its name
says which rows of which file tensor it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from irgraph.errors import ConfigError
from irgraph.gguf_names import LAYER_TENSORS, MODEL_TENSORS, gguf_name

# IR roles whose biases the zoo builder switches together (ModelConfig's qkv_bias, out_bias,
# mlp_bias, norm_bias): a family is dropped only when all of its biases are zero
BIAS_FAMILIES = (
    ("attn.q", "attn.k", "attn.v"),
    ("attn.o",),
    ("mlp.up", "mlp.gate", "mlp.down"),
    ("attn_norm", "mlp_norm", "norm", "embed_norm"),
)
FLOAT_TYPES = ("F32", "F16", "BF16")
FUSED_QKV = {"attn.qkv": "ATTN_QKV"}  # the fused role, known to the importer only


@dataclass(frozen=True)
class RowView:
    """Rows [start, stop) of a file tensor, as a tensor of their own."""

    name: str  # "blk.0.attn_qkv.weight (k rows 64:80)"
    tensor_type: Any
    shape: np.ndarray  # ggml order: ne0 (columns) first
    data: np.ndarray


def split_qkv(
    tensors: dict[str, Any], layers: int, heads: int, kv_heads: int, where: str
) -> dict[str, Any]:
    """`tensors` with each block's attn_qkv weight and bias replaced by q, k and v views."""
    out = dict(tensors)
    for layer in range(layers):
        for kind in ("weight", "bias"):
            fused = gguf_name(layer, "attn.qkv", kind, FUSED_QKV)
            t = out.pop(fused, None)
            if t is None:
                continue
            rows = int(t.shape[-1] if len(t.shape) > 1 else t.shape[0])
            parts = heads + 2 * kv_heads
            if rows % parts:
                raise ConfigError(
                    f"tensor {fused!r} has {rows} rows: not q, k and v of {heads} query and "
                    f"{kv_heads} KV heads of one width",
                    where=where,
                )
            width = rows // parts
            start = 0
            for role, n in (("attn.q", heads), ("attn.k", kv_heads), ("attn.v", kv_heads)):
                stop = start + n * width
                out[gguf_name(layer, role, kind)] = _rows(t, start, stop, f"{role[-1]} rows")
                start = stop
    return out


def _rows(t: Any, start: int, stop: int, what: str) -> RowView:
    shape = np.array(t.shape, dtype=np.int64)
    shape[-1 if len(shape) > 1 else 0] = stop - start
    return RowView(f"{t.name} ({what} {start}:{stop})", t.tensor_type, shape, t.data[start:stop])


def _is_zero(t: Any) -> bool:
    return t.tensor_type.name in FLOAT_TYPES and not np.any(np.asarray(t.data))


def drop_zero_biases(
    tensors: dict[str, Any], layers: int, roles: dict[str, str] | None = None
) -> dict[str, Any]:
    """`tensors` without the bias families that are zero in every tensor that has them
    (`roles`: the architecture's role -> MODEL_TENSOR overrides)."""
    out = dict(tensors)
    for family in BIAS_FAMILIES:
        names = [
            gguf_name(layer, role, "bias", roles)
            for role in family
            for layer in ([None] if role in MODEL_TENSORS else range(layers))
            if role in MODEL_TENSORS or role in LAYER_TENSORS
        ]
        present = [n for n in names if n in out]
        if present and all(_is_zero(out[n]) for n in present):
            for n in present:
                del out[n]
    return out


def drop_duplicate_head(tensors: dict[str, Any]) -> dict[str, Any]:
    """`tensors` without output.weight where it is the embedding, byte for byte (tied)."""
    head, embed = gguf_name(None, "lm_head", "weight"), gguf_name(None, "embed", "weight")
    h, e = tensors.get(head), tensors.get(embed)
    if h is None or e is None or h.tensor_type != e.tensor_type:
        return tensors
    if np.asarray(h.data).tobytes() != np.asarray(e.data).tobytes():
        return tensors
    return {n: t for n, t in tensors.items() if n != head}


__all__ = ["BIAS_FAMILIES", "RowView", "drop_duplicate_head", "drop_zero_biases", "split_qkv"]
