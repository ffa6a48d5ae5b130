"""The op set. Importing this package registers every op in `irgraph.registry.OPS`.

- `elementwise`: arithmetic and activations (add, mul, gelu, silu, glu, ...)
- `tensor`: shape and data movement (reshape, transpose, concat, split, gather, ...)
- `nn`: embedding, linear, layer_norm, rms_norm
- `rotary`: rotary position embedding with every scaling real checkpoints use
- `attention`: attention with masks, GQA/MQA, sliding window, explicit KV cache;
  position biases (ALiBi, T5 relative buckets, Transformer-XL's projected sinusoids);
  DeepSeek-v2 latent attention
- `moe`: top-k router and expert MLPs
- `kv_quant`: new keys and values quantized for an int8 / fp8 KV cache
- `ring_attention`: sliding-window attention over a ring-buffer cache of `window` slots
- `paged_attention`: causal attention over a KV cache in fixed-size pages with a block table
"""

from irgraph.ops import (
    attention,
    elementwise,
    kv_quant,
    moe,
    nn,
    paged_attention,
    ring_attention,
    rotary,
    tensor,
)

__all__ = [
    "attention",
    "elementwise",
    "kv_quant",
    "moe",
    "nn",
    "paged_attention",
    "ring_attention",
    "rotary",
    "tensor",
]
