"""A tiny LLaMA Hugging Face checkpoint folder written by hand (no transformers needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from irgraph.weights import save_safetensors

LLAMA = {
    "model_type": "llama",
    "vocab_size": 256,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "bos_token_id": 1,
    "eos_token_id": [2, 3],
    "initializer_range": 0.02,
    "attention_dropout": 0.0,
}


def llama_dir(tmp_path: Path, **extra_tensors: tuple[int, ...]) -> Path:
    """A random tiny LLaMA checkpoint in tmp_path/hf: config.json + model.safetensors."""
    rng = np.random.default_rng(0)
    cfg = LLAMA
    h, f, kvd = cfg["hidden_size"], cfg["intermediate_size"], 2 * 8
    tensors = {
        "model.embed_tokens.weight": (256, h),
        "model.norm.weight": (h,),
        "lm_head.weight": (256, h),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors.update(
            {
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
                p + "self_attn.q_proj.weight": (h, h),
                p + "self_attn.k_proj.weight": (kvd, h),
                p + "self_attn.v_proj.weight": (kvd, h),
                p + "self_attn.o_proj.weight": (h, h),
                p + "mlp.gate_proj.weight": (f, h),
                p + "mlp.up_proj.weight": (f, h),
                p + "mlp.down_proj.weight": (h, f),
            }
        )
    tensors.update(extra_tensors)
    arrays = {n: rng.standard_normal(s).astype(np.float32) for n, s in tensors.items()}
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    save_safetensors(arrays, folder / "model.safetensors")
    return folder
