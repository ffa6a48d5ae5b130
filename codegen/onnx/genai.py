"""genai_config.json for decoder-only graphs, so `onnxruntime_genai.Model(artifact_dir)` loads them.

Follows the IO contract in docs/onnxruntime.md §2: default names, BNSH cache,
`past_present_share_buffer` only when every attention is GroupQueryAttention
(a standard-ONNX attention graph cannot share the buffer, §2.3).
"""

from __future__ import annotations

from typing import Any

from irgraph import kvcache, lm
from irgraph.errors import CodegenError
from irgraph.ir import Graph

GENAI_FILE = "genai_config.json"
_DECODER_INPUTS = {"input_ids", "position_ids", "attention_mask"}
DEFAULT_CONTEXT = 4096


def genai_config(graph: Graph, *, share_buffer: bool, model_file: str) -> dict[str, Any] | None:
    """The config dict, or None when the graph is not a plain KV-cached decoder genai can drive."""
    if kvcache.contract_of(graph.meta) != kvcache.CacheContract():
        return None  # genai's decoder drives concat BNSH caches only
    past = [n for n in graph.inputs if n.startswith(lm.PAST_PREFIX)]
    other = set(graph.inputs) - set(past)
    if "input_ids" not in other or not other <= _DECODER_INPUTS or not past:
        return None
    if (
        any(not (n.endswith(".key") or n.endswith(".value")) for n in past)
        or any(not graph.inputs[n].type.dtype.is_float for n in past)  # quantize-kv's caches
        or "logits" not in graph.outputs
    ):
        return None
    layers = len(past) // 2
    key = graph.inputs[past[0]].type
    attention = [n for n in graph.nodes if n.op == "attention"]
    head_dim = key.shape[3]
    if not attention or not isinstance(key.shape[1], int) or not isinstance(head_dim, int):
        return None
    heads = attention[0].arg(0).type.shape[2]
    vocab = graph.outputs["logits"].type.shape[-1]
    if not isinstance(heads, int) or not isinstance(vocab, int):
        raise CodegenError(
            "genai_config needs static head and vocab sizes",
            expected="ints",
            got=f"heads {heads}, vocab {vocab}",
        )
    embed = next((n for n in graph.nodes if n.op == "embedding"), None)
    hidden = embed.outputs[0].type.shape[-1] if embed is not None else heads * head_dim

    def token(name: str, fallback: int) -> int:
        value = graph.meta.get(name)
        return int(value) if isinstance(value, int) and 0 <= value < vocab else fallback

    context = int(
        graph.meta.get("max_position_embeddings")
        or graph.meta.get("context_length")
        or DEFAULT_CONTEXT
    )
    inputs = {
        "input_ids": "input_ids",
        "past_key_names": "past_key_values.%d.key",
        "past_value_names": "past_key_values.%d.value",
    }
    for name in ("attention_mask", "position_ids"):
        if name in graph.inputs:
            inputs[name] = name
    return {
        "model": {
            "type": "llama",  # a registered generic decoder type (docs/onnxruntime.md §2.2)
            "vocab_size": vocab,
            "context_length": context,
            "bos_token_id": token("bos_token_id", 0),
            "eos_token_id": token("eos_token_id", vocab - 1),
            "pad_token_id": token("pad_token_id", 0),
            "decoder": {
                "filename": model_file,
                "head_size": key.shape[3],
                "hidden_size": hidden,
                "num_attention_heads": heads,
                "num_key_value_heads": key.shape[1],
                "num_hidden_layers": layers,
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "inputs": inputs,
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
            },
        },
        "search": {
            "max_length": context,
            "do_sample": False,
            "num_beams": 1,
            "past_present_share_buffer": share_buffer,
        },
    }
