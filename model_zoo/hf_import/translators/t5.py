"""T5 (v1.0 ReLU, v1.1 gated GELU, UL2 gated SiLU), mT5: encoder-decoder, relative buckets, RMSNorm.

T5 attention has no 1/sqrt(d) scaling. The LM head is the shared embedding
unless the checkpoint carries its own `lm_head.weight`; T5 v1.0 (a tied
head) scales the decoder output by d_model^-0.5, v1.1/UL2/mT5 do not
(transformers: `scale_decoder_outputs`, True unless tie_word_embeddings is false).
"""

from __future__ import annotations

from irgraph.model_zoo.config import Arch, ModelConfig, Norm, Position
from irgraph.model_zoo.hf_import.keys import ACTIVATIONS, HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids

MODEL_TYPES = ("t5", "mt5")
HARMLESS = (
    "n_positions",
    "output_past",
    "gradient_checkpointing",
)  # unused by relative-position T5


def translate(c: HFConfig) -> Plan:
    model_type = c.get("model_type")
    c.only(
        "is_encoder_decoder",
        (True,),
        "T5 decoder-only or encoder-only checkpoints are not supported",
    )
    proj = c.get("feed_forward_proj", "relu")
    parts = proj.split("-")
    gated = parts[0] == "gated"
    if len(parts) > 2 or (len(parts) == 2 and not gated):
        raise c.fail("feed_forward_proj must be ACT or gated-ACT", "feed_forward_proj")
    act = (
        "gelu_new" if proj == "gated-gelu" else parts[-1]
    )  # transformers' backwards-compatible special case
    c.only("dense_act_fn", (act, None), "derived from feed_forward_proj")
    c.only("is_gated_act", (gated, None), "derived from feed_forward_proj")
    if act not in ACTIVATIONS:
        raise c.fail(
            "unsupported activation", "feed_forward_proj", expected=" | ".join(sorted(ACTIVATIONS))
        )
    d_model = c.int("d_model")
    tie = c.bool("tie_word_embeddings", True)
    scale = c.bool("scale_decoder_outputs", tie) if model_type == "t5" else False
    layers = c.int("num_layers")
    config = ModelConfig(
        name=model_type,
        vocab_size=c.int("vocab_size"),
        hidden=d_model,
        layers=c.int("num_decoder_layers", layers),
        encoder_layers=layers,
        arch=Arch.ENCODER_DECODER,
        heads=c.int("num_heads"),
        head_dim=c.int("d_kv"),
        ffn=c.int("d_ff"),
        norm=Norm.RMS,
        norm_eps=c.float("layer_norm_epsilon", 1e-6),
        norm_bias=False,
        position=Position.RELATIVE,
        relative_buckets=c.int("relative_attention_num_buckets", 32),
        relative_max_distance=c.int("relative_attention_max_distance", 128),
        max_position=512,
        activation=ACTIVATIONS[act],
        gated_mlp=gated,
        attn_scale=1.0,
        tied_embeddings=True,  # the importer unties it when the checkpoint has lm_head.weight
        logit_scale=d_model**-0.5 if scale else 1.0,
    )
    ids = token_ids(c, {"decoder_start_token_id": c.token_id("pad_token_id") or 0})
    return plan(c, config, ids, harmless=HARMLESS)
