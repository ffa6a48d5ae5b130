"""Tiny random Hugging Face models for the import parity tests, one or more per model_type.

Every parameter (norm weights and biases included, which transformers
initialises to ones/zeros) gets seeded noise, so a tensor mapped to the wrong
role, a missed bias or a wrong QKV split changes the logits. Configs keep each
family's structural switches (GQA, MQA, sliding window, MoE, MLA + YaRN,
partial rotary, parallel blocks, post-norm, tied/untied heads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

VOCAB = 256
_LLAMA = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)

# name -> (transformers config class, kwargs)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", dict(_LLAMA, attention_bias=True, mlp_bias=True)),
    "llama3-rope": (
        "LlamaConfig",
        dict(
            _LLAMA,
            max_position_embeddings=64,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=500000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=8,
            ),
        ),
    ),
    "llama-linear": (
        "LlamaConfig",
        dict(_LLAMA, rope_parameters=dict(rope_type="linear", factor=2.0, rope_theta=10000.0)),
    ),
    "llama-dynamic": (
        "LlamaConfig",
        dict(
            _LLAMA,
            max_position_embeddings=4,
            tie_word_embeddings=True,
            rope_parameters=dict(rope_type="dynamic", factor=2.0, rope_theta=10000.0),
        ),
    ),
    "mistral": ("MistralConfig", dict(_LLAMA, sliding_window=3)),
    "mixtral": ("MixtralConfig", dict(_LLAMA, num_local_experts=4, num_experts_per_tok=2)),
    "gpt_neox": (
        "GPTNeoXConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
        ),
    ),
    "gpt_neox-sequential": (
        "GPTNeoXConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            use_parallel_residual=False,
        ),
    ),
    "gptj": (
        "GPTJConfig",
        dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64),
    ),
    "codegen": (
        "CodeGenConfig",
        dict(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64, n_ctx=64
        ),
    ),
    "bloom": ("BloomConfig", dict(vocab_size=VOCAB, hidden_size=48, n_layer=2, n_head=6)),
    "opt": (
        "OPTConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            ffn_dim=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
        ),
    ),
    "galactica": (
        "OPTConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            ffn_dim=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            activation_function="gelu",
            tie_word_embeddings=False,
        ),
    ),
    "opt-postnorm": (
        "OPTConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            ffn_dim=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            do_layer_norm_before=False,
        ),
    ),
    "falcon-7b": (
        "FalconConfig",
        dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4),
    ),
    "falcon-40b": (
        "FalconConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_kv_heads=2,
            new_decoder_architecture=True,
            bias=True,
        ),
    ),
    "falcon-sequential": (
        "FalconConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            multi_query=False,
            parallel_attn=False,
        ),
    ),
    "gpt_bigcode": (
        "GPTBigCodeConfig",
        dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64),
    ),
    "gpt_bigcode-mha": (
        "GPTBigCodeConfig",
        dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, multi_query=False),
    ),
    "t5": (
        "T5Config",
        dict(
            vocab_size=VOCAB,
            d_model=32,
            d_kv=8,
            d_ff=48,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
        ),
    ),
    "t5-v1_1": (
        "T5Config",
        dict(
            vocab_size=VOCAB,
            d_model=32,
            d_kv=8,
            d_ff=48,
            num_layers=2,
            num_decoder_layers=3,
            num_heads=4,
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
        ),
    ),
    "ul2": (
        "T5Config",
        dict(
            vocab_size=VOCAB,
            d_model=32,
            d_kv=8,
            d_ff=48,
            num_layers=2,
            num_heads=4,
            feed_forward_proj="gated-silu",
            tie_word_embeddings=False,
        ),
    ),
    "mt5": (
        "MT5Config",
        dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4),
    ),
    "deepseek_v2": (
        "DeepseekV2Config",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=48,
            moe_intermediate_size=16,
            num_hidden_layers=3,
            num_attention_heads=4,
            n_routed_experts=8,
            n_shared_experts=2,
            num_experts_per_tok=2,
            first_k_dense_replace=1,
            kv_lora_rank=16,
            q_lora_rank=24,
            qk_nope_head_dim=8,
            qk_rope_head_dim=4,
            v_head_dim=8,
            topk_method="group_limited_greedy",
            n_group=4,
            topk_group=2,
            routed_scaling_factor=1.5,
            max_position_embeddings=256,
            rope_parameters=dict(
                rope_type="yarn",
                rope_theta=10000.0,
                factor=4.0,
                original_max_position_embeddings=64,
                beta_fast=32,
                beta_slow=1,
                mscale=0.707,
                mscale_all_dim=0.707,
            ),
        ),
    ),
    "deepseek_v2-lite": (
        "DeepseekV2Config",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=48,
            moe_intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=4,
            n_routed_experts=4,
            n_shared_experts=1,
            num_experts_per_tok=2,
            first_k_dense_replace=1,
            kv_lora_rank=16,
            q_lora_rank=None,
            qk_nope_head_dim=8,
            qk_rope_head_dim=4,
            v_head_dim=8,
        ),
    ),
    "nemotron": (
        "NemotronConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
        ),
    ),
}


# cases whose config.json is rewritten in the transformers 4.x spelling (rope_theta / rope_scaling)
LEGACY_ROPE = ("llama3-rope", "gpt_neox", "nemotron", "deepseek_v2")


def make_model(case: str, seed: int = 0, noise: float = 0.1):
    """A seeded, perturbed transformers model in eval mode with eager attention."""
    import torch
    import transformers

    cls_name, kwargs = CASES[case]
    config = getattr(transformers, cls_name)(**kwargs, attn_implementation="eager")
    torch.manual_seed(seed)
    auto = (
        transformers.AutoModelForSeq2SeqLM
        if config.is_encoder_decoder
        else transformers.AutoModelForCausalLM
    )
    model = auto.from_config(config, attn_implementation="eager").eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn(p.shape, generator=gen))
    return model


def save_model(model, folder: Path, dtype: str = "float32", legacy_rope: bool = False) -> Path:
    """save_pretrained as safetensors in `dtype`.

    `legacy_rope` rewrites config.json in the 4.x rope spelling.
    """
    import torch

    saved = model.to(getattr(torch, dtype))
    saved.save_pretrained(folder, safe_serialization=True)
    model.to(torch.float32)
    if legacy_rope:
        path = folder / "config.json"
        cfg = json.loads(path.read_text())
        rope = cfg.pop("rope_parameters")
        cfg["rope_theta"] = rope.pop("rope_theta")
        if "partial_rotary_factor" in rope:
            cfg["partial_rotary_factor"] = rope.pop("partial_rotary_factor")
        kind = rope.pop("rope_type")
        cfg["rope_scaling"] = None if kind == "default" else {"type": kind, **rope}
        if cfg["model_type"] == "gpt_neox":  # GPT-NeoX's own 4.x names
            cfg["rotary_emb_base"] = cfg.pop("rope_theta")
            cfg["rotary_pct"] = cfg.pop("partial_rotary_factor")
        path.write_text(json.dumps(cfg))
    return folder


def hf_logits(
    model, ids: np.ndarray, decode: bool, encoder_ids: np.ndarray | None = None
) -> np.ndarray:
    """transformers' logits in fp32: one call, or token by token through its past_key_values."""
    import torch

    tokens = torch.as_tensor(ids)
    kw: dict[str, Any] = {}
    with torch.no_grad():
        if encoder_ids is not None:
            kw["encoder_outputs"] = model.get_encoder()(input_ids=torch.as_tensor(encoder_ids))
        key = "decoder_input_ids" if encoder_ids is not None else "input_ids"
        if not decode:
            return model(**{key: tokens}, **kw).logits.float().numpy()
        past, rows = None, []
        for t in range(tokens.shape[1]):
            out = model(**{key: tokens[:, t : t + 1]}, past_key_values=past, use_cache=True, **kw)
            past = out.past_key_values
            rows.append(out.logits.float().numpy())
        return np.concatenate(rows, axis=1)
