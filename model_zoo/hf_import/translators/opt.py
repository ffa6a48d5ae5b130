"""OPT and Galactica: learned positions offset by 2, ReLU (Galactica: GELU) MLP, pre- or post-LN."""

from __future__ import annotations

from irgraph.model_zoo.config import ModelConfig, Norm, NormPlacement, Position
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.translators.common import plan, token_ids

MODEL_TYPES = ("opt",)
POSITION_OFFSET = 2  # OPTLearnedPositionalEmbedding keeps two rows for fairseq's padding positions


def translate(c: HFConfig) -> Plan:
    hidden = c.int("hidden_size")
    c.only(
        "word_embed_proj_dim", (hidden, None), "embedding projections (OPT-350m) are not supported"
    )
    c.only("layer_norm_elementwise_affine", (True,), "norms without weights are not supported")
    c.only("scale_embedding", (False,), "OPT does not scale its embeddings")
    c.only("learned_embedding", (True,), "OPT learns its position table")
    pre = c.bool("do_layer_norm_before", True)
    remove_final = c.bool("_remove_final_layer_norm", False)
    bias = c.bool("enable_bias", True)
    config = ModelConfig(
        name="opt",
        vocab_size=c.int("vocab_size"),
        hidden=hidden,
        layers=c.int("num_hidden_layers"),
        heads=c.int("num_attention_heads"),
        ffn=c.int("ffn_dim"),
        norm=Norm.LAYER,
        norm_eps=1e-5,  # nn.LayerNorm's default; OPT configs carry no epsilon
        norm_placement=NormPlacement.PRE if pre else NormPlacement.POST,
        final_norm=pre and not remove_final,  # the post-norm variant (OPT-350m) has no final norm
        position=Position.LEARNED,
        max_position=c.int("max_position_embeddings", 2048),
        activation=c.activation("activation_function", "relu"),
        qkv_bias=bias,
        out_bias=bias,
        mlp_bias=bias,
        tied_embeddings=c.bool("tie_word_embeddings", True),
    )
    return plan(c, config, token_ids(c), position_offset=POSITION_OFFSET)
