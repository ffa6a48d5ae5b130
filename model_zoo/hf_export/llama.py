"""The LLaMA form (model_type llama, mistral, mixtral): a graph's config.json and tensor names.

`config_json(graph)` reads the architecture off the graph: sizes from the parameters' shapes
and the attention node's types, the rest from node attributes (rms_norm's eps, rotary's
settings, glu's activation, attention's window, moe_router's top-k). It does not decide
whether the graph *is* LLaMA-form: `hf_export.check` rebuilds the graph from the written
config through the importer and compares the text, which is the authority.

Which model_type: routed experts make it Mixtral, a sliding window Mistral, else LLaMA (whose
config alone says attention_bias / mlp_bias). The config is written in the transformers 4.x
spelling (`rope_theta`, `rope_scaling`), which transformers 4.x and 5.x both read.

Rotary rows: the IR's rotary without `interleaved` rotates feature i with feature i + d/2,
which is transformers' `rotate_half`, so q and k rows go out in the order they have (the
GGUF writer is the exporter that reorders them, into llama.cpp's pairs).
"""

from __future__ import annotations

import re
from typing import Any

from irgraph.dtypes import DType
from irgraph.errors import ConfigError
from irgraph.ir import Graph, Node

MODEL_TYPES = ("llama", "mistral", "mixtral")
ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "mixtral": "MixtralForCausalLM",
}

# IR parameter -> Hugging Face tensor (`{i}` a layer); expert stacks are split per expert below
NAMES: dict[str, str] = {
    "embed.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
    "layers.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "layers.{i}.mlp_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "layers.{i}.attn.q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "layers.{i}.attn.k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "layers.{i}.attn.v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "layers.{i}.attn.o.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "layers.{i}.attn.q.bias": "model.layers.{i}.self_attn.q_proj.bias",
    "layers.{i}.attn.k.bias": "model.layers.{i}.self_attn.k_proj.bias",
    "layers.{i}.attn.v.bias": "model.layers.{i}.self_attn.v_proj.bias",
    "layers.{i}.attn.o.bias": "model.layers.{i}.self_attn.o_proj.bias",
    "layers.{i}.mlp.gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "layers.{i}.mlp.up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "layers.{i}.mlp.down.weight": "model.layers.{i}.mlp.down_proj.weight",
    "layers.{i}.mlp.gate.bias": "model.layers.{i}.mlp.gate_proj.bias",
    "layers.{i}.mlp.up.bias": "model.layers.{i}.mlp.up_proj.bias",
    "layers.{i}.mlp.down.bias": "model.layers.{i}.mlp.down_proj.bias",
    "layers.{i}.moe.router.weight": "model.layers.{i}.block_sparse_moe.gate.weight",
}
# Mixtral's experts as its Hub checkpoints (and transformers' save_pretrained) store them:
# one [out, in] matrix per expert, w1 = gate, w3 = up, w2 = down
EXPERTS: dict[str, str] = {
    "layers.{i}.moe.experts.gate": "model.layers.{i}.block_sparse_moe.experts.{e}.w1.weight",
    "layers.{i}.moe.experts.up": "model.layers.{i}.block_sparse_moe.experts.{e}.w3.weight",
    "layers.{i}.moe.experts.down": "model.layers.{i}.block_sparse_moe.experts.{e}.w2.weight",
}
_LAYER = re.compile(r"layers\.(\d+)\.(.+)")

# irgraph activation -> the ACT2FN name transformers reads it back as
ACTIVATIONS = {
    "silu": "silu",
    "gelu": "gelu",
    "gelu_tanh": "gelu_pytorch_tanh",
    "relu": "relu",
    "relu2": "relu2",
    "fast_gelu": "quick_gelu",
    "sigmoid": "sigmoid",
}
TORCH_DTYPES = {DType.f32: "float32", DType.f16: "float16", DType.bf16: "bfloat16"}


def hf_name(param: str) -> str | None:
    """The checkpoint name of a (non-expert) IR parameter, None when the form has no such."""
    if param in NAMES:
        return NAMES[param]
    m = _LAYER.fullmatch(param)
    if m and (template := NAMES.get(f"layers.{{i}}.{m[2]}")):
        return template.format(i=m[1])
    return None


def expert_names(param: str, experts: int) -> list[str] | None:
    """The per-expert checkpoint names of an IR expert stack [experts, out, in]."""
    m = _LAYER.fullmatch(param)
    template = EXPERTS.get(f"layers.{{i}}.{m[2]}") if m else None
    if m is None or template is None:
        return None
    return [template.format(i=m[1], e=e) for e in range(experts)]


def _first(graph: Graph, op: str) -> Node | None:
    return next((n for n in graph.nodes if n.op == op), None)


def _refuse(graph: Graph, why: str, **kw: Any) -> ConfigError:
    return ConfigError(
        f"export-hf writes LLaMA-form graphs ({', '.join(MODEL_TYPES)}); graph {graph.name!r} "
        f"is not one: {why}",
        **kw,
    )


def _shape(graph: Graph, name: str) -> tuple[int, ...]:
    return tuple(int(d) for d in graph.params[name].type.shape)  # type: ignore[arg-type]


def _rope(graph: Graph, node: Node, head_dim: int) -> dict[str, Any]:
    """rope_theta and rope_scaling (4.x spelling) of the graph's rotary node."""
    a = node.attrs
    if a["interleaved"]:
        raise _refuse(graph, "its rotary is interleaved (pairs 2i, 2i+1), not rotate-half")
    if a["rotary_dim"] not in (0, head_dim):
        raise _refuse(
            graph,
            "partial rotary: transformers' LLaMA attention rotates the whole head",
            got=f"rotary_dim={a['rotary_dim']} of {head_dim}",
        )
    if a["attention_factor"] is not None:
        raise _refuse(graph, "an explicit rotary attention_factor", got=a["attention_factor"])
    scaling: dict[str, Any] | None = None
    kind = a["scaling"]
    if kind == "linear":
        scaling = {"rope_type": "linear", "factor": a["factor"]}
    elif kind == "dynamic_ntk":  # rescaled against max_position_embeddings, as transformers does
        scaling = {"rope_type": "dynamic", "factor": a["factor"]}
    elif kind == "llama3":
        scaling = {
            "rope_type": "llama3",
            "factor": a["factor"],
            "original_max_position_embeddings": a["original_max_position"],
            "low_freq_factor": a["low_freq_factor"],
            "high_freq_factor": a["high_freq_factor"],
        }
    elif kind == "yarn":
        scaling = {
            "rope_type": "yarn",
            "factor": a["factor"],
            "original_max_position_embeddings": a["original_max_position"],
            "beta_fast": a["beta_fast"],
            "beta_slow": a["beta_slow"],
            "mscale": a["mscale"],
            "mscale_all_dim": a["mscale_all_dim"],
        }
    return {"rope_theta": a["base"], "rope_scaling": scaling}


def config_json(graph: Graph) -> dict[str, Any]:
    """The config.json that imports as `graph` if it is LLaMA-form (`check` confirms it)."""
    params = graph.params
    for need in ("embed.weight", "layers.0.attn.q.weight", "layers.0.attn_norm.weight"):
        if need not in params:
            raise _refuse(graph, f"it has no parameter {need!r}")
    if "decoder_input_ids" in graph.inputs:
        raise _refuse(graph, "it is an encoder-decoder")
    norm, rotary, attention = (_first(graph, op) for op in ("rms_norm", "rotary", "attention"))
    if norm is None:
        raise _refuse(graph, "its norms are not RMSNorm")
    if rotary is None:
        raise _refuse(graph, "it has no rotary position encoding")
    if attention is None or attention.inputs[0] is None or attention.inputs[1] is None:
        raise _refuse(graph, "it has no attention node")
    vocab, hidden = _shape(graph, "embed.weight")
    heads, head_dim = (int(d) for d in attention.inputs[0].type.shape[-2:])  # type: ignore[arg-type]
    kv_heads = int(attention.inputs[1].type.shape[-2])  # type: ignore[arg-type]
    layers = sum(1 for n in params if re.fullmatch(r"layers\.\d+\.attn_norm\.weight", n))
    moe = _first(graph, "moe_router")
    if moe is not None:
        experts, ffn, _ = _shape(graph, "layers.0.moe.experts.up")
        act = _first(graph, "moe_experts")
        activation = act.attrs["act"] if act is not None else "silu"
    elif "layers.0.mlp.up.weight" in params:
        ffn = _shape(graph, "layers.0.mlp.up.weight")[0]
        glu = _first(graph, "glu")
        if glu is None:
            raise _refuse(graph, "its MLP is not gated")
        activation = glu.attrs["act"]
    else:
        raise _refuse(graph, "it has neither layers.0.mlp.up.weight nor routed experts")
    if activation not in ACTIVATIONS:
        raise _refuse(graph, f"activation {activation!r} has no transformers name")
    window = int(attention.attrs["window"])
    model_type = "mixtral" if moe is not None else "mistral" if window else "llama"
    dtypes = {params[n].type.dtype for n in params}
    meta = graph.meta
    config: dict[str, Any] = {
        "architectures": [ARCHITECTURES[model_type]],
        "model_type": model_type,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_act": ACTIVATIONS[activation],
        "max_position_embeddings": int(meta.get("max_position", 2048)),
        "rms_norm_eps": float(norm.attrs["eps"]),
        **_rope(graph, rotary, head_dim),
        "tie_word_embeddings": "lm_head.weight" not in params,
        "torch_dtype": TORCH_DTYPES.get(next(iter(dtypes)), "float32")
        if len(dtypes) == 1
        else "float32",
    }
    if model_type == "llama":
        config["attention_bias"] = "layers.0.attn.q.bias" in params
        config["mlp_bias"] = "layers.0.mlp.up.bias" in params
    else:  # both default to 4096-token windows when the key is absent: say "none" explicitly
        config["sliding_window"] = window or None
    if moe is not None:
        config["num_local_experts"] = experts
        config["num_experts_per_tok"] = int(moe.attrs["top_k"])
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        ids = meta.get(key.replace("_id", "_ids"))
        config[key] = ids if isinstance(ids, list) else meta.get(key)
    return config
