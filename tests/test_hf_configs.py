"""Published checkpoints' config.json files translate (every key understood) to their architectures.

The dicts are the released config.json files of the named Hugging Face
repositories (long `task_specific_params` / `auto_map` values shortened).
Structure-only graphs are built from them (no weights are allocated) and
their parameter counts compared with the published totals.
"""

from __future__ import annotations

import pytest

from irgraph.model_zoo.config import Arch, Block, NormPlacement, Position, RopeScaling
from irgraph.model_zoo.hf_import.translators import translate

LLAMA2_7B = {  # meta-llama/Llama-2-7b-hf
    "_name_or_path": "meta-llama/Llama-2-7b-hf", "architectures": ["LlamaForCausalLM"], "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "float16",
    "transformers_version": "4.31.0.dev0", "use_cache": True, "vocab_size": 32000}
LLAMA31_8B = {  # meta-llama/Llama-3.1-8B
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": {
        "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
        "rope_type": "llama3"}, "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": True, "vocab_size": 128256}
DEEPSEEK_67B = {  # deepseek-ai/deepseek-llm-67b-base
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 100000, "eos_token_id": 100001, "hidden_act": "silu",
    "hidden_size": 8192, "initializer_range": 0.02, "intermediate_size": 22016, "max_position_embeddings": 4096,
    "model_type": "llama", "num_attention_heads": 64, "num_hidden_layers": 95, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.33.1", "use_cache": True,
    "vocab_size": 102400}
MISTRAL_7B = {  # mistralai/Mistral-7B-v0.1
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
    "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": True, "vocab_size": 32000}
MIXTRAL_8X7B = {  # mistralai/Mixtral-8x7B-v0.1
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32, "num_experts_per_tok": 2,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": False,
    "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.36.0.dev0",
    "use_cache": True, "vocab_size": 32000}
GPT_NEOX_20B = {  # EleutherAI/gpt-neox-20b
    "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu_fast",
    "hidden_size": 6144, "initializer_range": 0.02, "intermediate_size": 24576, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 2048, "model_type": "gpt_neox", "num_attention_heads": 64, "num_hidden_layers": 44,
    "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": False, "torch_dtype": "float16",
    "transformers_version": "4.21.0.dev0", "use_cache": True, "vocab_size": 50432}
GPTJ_6B = {  # EleutherAI/gpt-j-6b
    "activation_function": "gelu_new", "architectures": ["GPTJForCausalLM"], "attn_pdrop": 0.0,
    "bos_token_id": 50256, "embd_pdrop": 0.0, "eos_token_id": 50256, "gradient_checkpointing": False,
    "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gptj", "n_embd": 4096, "n_head": 16,
    "n_inner": None, "n_layer": 28, "n_positions": 2048, "resid_pdrop": 0.0, "rotary": True, "rotary_dim": 64,
    "scale_attn_weights": True, "summary_activation": None, "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True, "summary_type": "cls_index", "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50, "temperature": 1.0}},
    "tie_word_embeddings": False, "tokenizer_class": "GPT2Tokenizer", "transformers_version": "4.18.0.dev0",
    "use_cache": True, "vocab_size": 50400}
CODEGEN_350M = {  # Salesforce/codegen-350M-mono
    "activation_function": "gelu_new", "architectures": ["CodeGenForCausalLM"], "attn_pdrop": 0.0,
    "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 50256, "gradient_checkpointing": False,
    "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "codegen", "n_ctx": 2048, "n_embd": 1024,
    "n_head": 16, "n_inner": None, "n_layer": 20, "n_positions": 2048, "resid_pdrop": 0.0, "rotary_dim": 32,
    "scale_attn_weights": True, "summary_activation": None, "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True, "summary_type": "cls_index", "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50, "temperature": 1.0}},
    "tie_word_embeddings": False, "tokenizer_class": "GPT2Tokenizer", "torch_dtype": "float16",
    "transformers_version": "4.21.0.dev0", "use_cache": True, "vocab_size": 51200}
BLOOM_560M = {  # bigscience/bloom-560m
    "apply_residual_connection_post_layernorm": False, "attention_dropout": 0.0, "attention_softmax_in_fp32": True,
    "bias_dropout_fusion": True, "bos_token_id": 1, "eos_token_id": 2, "hidden_dropout": 0.0, "hidden_size": 1024,
    "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "masked_softmax_fusion": True, "model_type": "bloom",
    "n_head": 16, "n_inner": None, "n_layer": 24, "offset_alibi": 100, "pad_token_id": 3, "pretraining_tp": 1,
    "skip_bias_add": True, "skip_bias_add_qkv": False, "slow_but_exact": False, "unk_token_id": 0,
    "use_cache": True, "vocab_size": 250880}
OPT_125M = {  # facebook/opt-125m
    "_name_or_path": "facebook/opt-125m", "_remove_final_layer_norm": False, "activation_dropout": 0.0,
    "activation_function": "relu", "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0,
    "bos_token_id": 2, "do_layer_norm_before": True, "dropout": 0.1, "eos_token_id": 2, "ffn_dim": 3072,
    "hidden_size": 768, "init_std": 0.02, "layerdrop": 0.0, "max_position_embeddings": 2048, "model_type": "opt",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1, "prefix": "</s>",
    "torch_dtype": "float16", "transformers_version": "4.21.0.dev0", "use_cache": True, "vocab_size": 50272,
    "word_embed_proj_dim": 768}
GALACTICA_125M = {  # facebook/galactica-125m
    "_name_or_path": "facebook/galactica-125m", "_remove_final_layer_norm": False, "activation_dropout": 0.0,
    "activation_function": "gelu", "architectures": ["OPTForCausalLM"], "attention_dropout": 0.1,
    "bos_token_id": 0, "do_layer_norm_before": True, "dropout": 0.1, "enable_bias": True, "eos_token_id": 2,
    "ffn_dim": 3072, "hidden_size": 768, "init_std": 0.02, "layer_norm_elementwise_affine": True,
    "layerdrop": 0.0, "learned_embedding": True, "max_position_embeddings": 2048, "model_type": "opt",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1, "scale_embedding": False,
    "torch_dtype": "float32", "transformers_version": "4.21.0.dev0", "use_cache": True, "vocab_size": 50000,
    "word_embed_proj_dim": 768}
FALCON_7B = {  # tiiuae/falcon-7b
    "alibi": False, "apply_residual_connection_post_layernorm": False, "architectures": ["FalconForCausalLM"],
    "attention_dropout": 0.0, "bias": False, "bos_token_id": 11, "eos_token_id": 11, "hidden_dropout": 0.0,
    "hidden_size": 4544, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "falcon",
    "multi_query": True, "new_decoder_architecture": False, "num_attention_heads": 71, "num_hidden_layers": 32,
    "parallel_attn": True, "torch_dtype": "bfloat16", "transformers_version": "4.27.4", "use_cache": True,
    "vocab_size": 65024}
FALCON_40B = {**FALCON_7B, "hidden_size": 8192, "new_decoder_architecture": True, "num_attention_heads": 128,
              "num_hidden_layers": 60, "num_kv_heads": 8}  # tiiuae/falcon-40b
STARCODER = {  # bigcode/starcoder
    "activation_function": "gelu_pytorch_tanh", "architectures": ["GPTBigCodeForCausalLM"],
    "attention_softmax_in_fp32": True, "attn_pdrop": 0.1, "bos_token_id": 0, "embd_pdrop": 0.1, "eos_token_id": 0,
    "inference_runner": 0, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "max_batch_size": None,
    "max_sequence_length": None, "model_type": "gpt_bigcode", "multi_query": True, "n_embd": 6144, "n_head": 48,
    "n_inner": 24576, "n_layer": 40, "n_positions": 8192, "pad_key_length": True, "pre_allocate_kv_cache": False,
    "resid_pdrop": 0.1, "scale_attention_softmax_in_fp32": True, "scale_attn_weights": True,
    "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
    "summary_type": "cls_index", "summary_use_proj": True, "torch_dtype": "float32",
    "transformers_version": "4.28.1", "use_cache": True, "validate_runner_input": True, "vocab_size": 49152}
T5_SMALL = {  # google-t5/t5-small
    "architectures": ["T5ForConditionalGeneration"], "d_ff": 2048, "d_kv": 64, "d_model": 512,
    "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1, "initializer_factor": 1.0,
    "is_encoder_decoder": True, "layer_norm_epsilon": 1e-06, "model_type": "t5", "n_positions": 512,
    "num_heads": 8, "num_layers": 6, "output_past": True, "pad_token_id": 0, "relative_attention_num_buckets": 32,
    "task_specific_params": {"summarization": {"prefix": "summarize: "}}, "vocab_size": 32128}
T5_V11_BASE = {  # google/t5-v1_1-base
    "architectures": ["T5ForConditionalGeneration"], "d_ff": 2048, "d_kv": 64, "d_model": 768,
    "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1, "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0, "is_encoder_decoder": True, "layer_norm_epsilon": 1e-06, "model_type": "t5",
    "num_decoder_layers": 12, "num_heads": 12, "num_layers": 12, "output_past": True, "pad_token_id": 0,
    "relative_attention_num_buckets": 32, "tie_word_embeddings": False, "vocab_size": 32128}
MT5_SMALL = {  # google/mt5-small
    "_name_or_path": "/home/patrick/hugging_face/t5/mt5-small", "architectures": ["MT5ForConditionalGeneration"],
    "d_ff": 1024, "d_kv": 64, "d_model": 512, "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": True,
    "layer_norm_epsilon": 1e-06, "model_type": "mt5", "num_decoder_layers": 8, "num_heads": 6, "num_layers": 8,
    "pad_token_id": 0, "relative_attention_num_buckets": 32, "tie_word_embeddings": False,
    "tokenizer_class": "T5Tokenizer", "transformers_version": "4.10.0.dev0", "use_cache": True,
    "vocab_size": 250112}
UL2 = {  # google/ul2
    "architectures": ["T5ForConditionalGeneration"], "d_ff": 16384, "d_kv": 256, "d_model": 4096,
    "decoder_start_token_id": 0, "dense_act_fn": "silu", "dropout_rate": 0.1, "eos_token_id": 1,
    "feed_forward_proj": "gated-silu", "initializer_factor": 1.0, "is_encoder_decoder": True, "is_gated_act": True,
    "layer_norm_epsilon": 1e-06, "model_type": "t5", "num_decoder_layers": 32, "num_heads": 16, "num_layers": 32,
    "output_past": True, "pad_token_id": 0, "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32, "task_specific_params": {}, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.21.0.dev0", "use_cache": True, "vocab_size": 32128}
DEEPSEEK_V2_LITE = {  # deepseek-ai/DeepSeek-V2-Lite
    "architectures": ["DeepseekV2ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV2Config"}, "aux_loss_alpha": 0.001,
    "bos_token_id": 100000, "eos_token_id": 100001, "first_k_dense_replace": 1, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 10944, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "model_type": "deepseek_v2", "moe_intermediate_size": 1408,
    "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64, "n_shared_experts": 2, "norm_topk_prob": False,
    "num_attention_heads": 16, "num_experts_per_tok": 6, "num_hidden_layers": 27, "num_key_value_heads": 16,
    "pretraining_tp": 1, "q_lora_rank": None, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "rms_norm_eps": 1e-06, "rope_scaling": {
        "beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
        "original_max_position_embeddings": 4096, "type": "yarn"}, "rope_theta": 10000,
    "routed_scaling_factor": 1.0, "scoring_func": "softmax", "seq_aux": True, "tie_word_embeddings": False,
    "topk_group": 1, "topk_method": "greedy", "torch_dtype": "bfloat16", "transformers_version": "4.33.1",
    "use_cache": True, "v_head_dim": 128, "vocab_size": 102400}
DEEPSEEK_V2 = {**DEEPSEEK_V2_LITE, "hidden_size": 5120, "intermediate_size": 12288, "moe_intermediate_size": 1536,
               "n_group": 8, "n_routed_experts": 160, "num_attention_heads": 128, "num_hidden_layers": 60,
               "num_key_value_heads": 128, "q_lora_rank": 1536, "routed_scaling_factor": 16.0, "topk_group": 3,
               "topk_method": "group_limited_greedy"}  # deepseek-ai/DeepSeek-V2
MINITRON_4B = {  # nvidia/Minitron-4B-Base (Nemotron-4 pruned)
    "architectures": ["NemotronForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 2, "eos_token_id": 3, "head_dim": 128, "hidden_act": "relu2", "hidden_size": 3072,
    "initializer_range": 0.0134, "intermediate_size": 9216, "max_position_embeddings": 4096, "mlp_bias": False,
    "model_type": "nemotron", "norm_eps": 1e-05, "num_attention_heads": 24, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "partial_rotary_factor": 0.5, "rope_scaling": None, "rope_theta": 10000,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.32.0.dev0",
    "use_cache": True, "vocab_size": 256000}

# name -> (config.json, published parameter count)
PUBLISHED = {
    "llama-2-7b": (LLAMA2_7B, 6_738_415_616),
    "llama-3.1-8b": (LLAMA31_8B, 8_030_261_248),
    "deepseek-67b": (DEEPSEEK_67B, 67_000_000_000),
    "mistral-7b": (MISTRAL_7B, 7_241_732_096),
    "mixtral-8x7b": (MIXTRAL_8X7B, 46_702_792_704),
    "gpt-neox-20b": (GPT_NEOX_20B, 20_554_567_680),
    "gpt-j-6b": (GPTJ_6B, 6_053_381_344),
    "codegen-350m": (CODEGEN_350M, 356_712_448),
    "bloom-560m": (BLOOM_560M, 559_214_592),
    "opt-125m": (OPT_125M, 125_239_296),
    "galactica-125m": (GALACTICA_125M, 125_000_000),
    "falcon-7b": (FALCON_7B, 6_921_720_704),
    "falcon-40b": (FALCON_40B, 41_303_714_304),
    "starcoder": (STARCODER, 15_517_462_528),
    "t5-small": (T5_SMALL, 60_506_624),
    "t5-v1_1-base": (T5_V11_BASE, 247_577_856),
    "mt5-small": (MT5_SMALL, 300_176_768),
    "ul2": (UL2, 19_460_000_000),
    "deepseek-v2-lite": (DEEPSEEK_V2_LITE, 15_706_484_224),
    "deepseek-v2": (DEEPSEEK_V2, 235_741_434_880),
    "minitron-4b": (MINITRON_4B, 4_193_409_024),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_config_translates(name):
    raw, _ = PUBLISHED[name]
    config = translate(dict(raw), f"{name}/config.json").config
    assert config.vocab_size == raw["vocab_size"]


def test_published_configs_keep_their_architecture():
    def cfg(raw):
        return translate(dict(raw), "config.json").config

    assert cfg(LLAMA31_8B).rotary.scaling is RopeScaling.LLAMA3 and cfg(LLAMA31_8B).kv_heads == 8
    assert cfg(MISTRAL_7B).sliding_window == 4096
    assert cfg(MIXTRAL_8X7B).moe.num_experts == 8 and cfg(MIXTRAL_8X7B).moe.top_k == 2
    assert cfg(GPT_NEOX_20B).rotary.fraction == 0.25 and cfg(GPT_NEOX_20B).block is Block.PARALLEL_TWO_NORMS
    assert cfg(GPTJ_6B).rotary.interleaved and cfg(GPTJ_6B).rotary.fraction == 64 / 256
    assert cfg(BLOOM_560M).position is Position.ALIBI and cfg(BLOOM_560M).embedding_norm
    assert cfg(OPT_125M).position is Position.LEARNED and cfg(OPT_125M).norm_placement is NormPlacement.PRE
    assert cfg(FALCON_7B).kv_heads == 1 and cfg(FALCON_7B).block is Block.PARALLEL
    assert cfg(FALCON_40B).kv_heads == 8 and cfg(FALCON_40B).block is Block.PARALLEL_TWO_NORMS
    assert cfg(STARCODER).kv_heads == 1 and cfg(STARCODER).max_position == 8192
    assert cfg(T5_SMALL).arch is Arch.ENCODER_DECODER and cfg(T5_SMALL).logit_scale == pytest.approx(512**-0.5)
    assert cfg(T5_V11_BASE).logit_scale == 1.0 and cfg(T5_V11_BASE).gated_mlp
    assert cfg(UL2).head_dim == 256 and cfg(UL2).activation.value == "silu"
    v2 = cfg(DEEPSEEK_V2)
    assert (v2.mla.kv_rank, v2.mla.q_rank, v2.moe.n_group, v2.moe.topk_group) == (512, 1536, 8, 3)
    assert v2.moe.scaling == 16.0 and v2.rotary.scaling is RopeScaling.YARN
    assert cfg(MINITRON_4B).norm_weight_offset == 1.0 and cfg(MINITRON_4B).rotary.fraction == 0.5


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_size_graph_has_the_published_parameter_count(name):
    from irgraph.analysis import cost
    from irgraph.model_zoo.builder import build_graph

    raw, published = PUBLISHED[name]
    config = translate(dict(raw), f"{name}/config.json").config
    if name in ("t5-v1_1-base", "mt5-small", "ul2"):  # released with an untied LM head
        config = config.replace(tied_embeddings=False)
    params = cost(build_graph(config, weights=None)).params
    assert abs(params - published) / published < 0.01, f"{name}: {params:,} vs published {published:,}"
