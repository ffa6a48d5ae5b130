"""Chinese labs' surveyed models: PanGu-α, PanGu-Σ (Huawei), CPM-2 (BAAI), ERNIE 3.0 and ERNIE 3.0
Titan (Baidu), Yuan 1.0 (Inspur), GLM-130B (Tsinghua)."""

from __future__ import annotations

from dataclasses import replace

from irgraph.model_zoo.config import (
    UNSIZED,
    Activation,
    Arch,
    ModelConfig,
    MoeConfig,
    Norm,
    NormPlacement,
    Position,
    RotaryConfig,
    ZooEntry,
)
from irgraph.model_zoo.survey_table5 import cite, survey, survey_params

_PANGU_A = survey("PanGu-α (200B)")
_PANGU_S = survey("PanGu-Σ (1085B)")
_CPM2 = survey("CPM-2 (198B)")
_ERNIE3 = survey("ERNIE 3.0 (10B)")
_TITAN = survey("ERNIE 3.0 Titan (260B)")
_YUAN = survey("Yuan 1.0 (245B)")
_GLM = survey("GLM (130B)")

_PANGU_CODE = (
    "mindspore-ai/mindspore model_zoo/official/nlp/pangu1/src/pangu1.py (PanGu1_Model): "
    "num_layers - 1 pre-LN blocks, final LayerNorm, then the top query layer whose query is a "
    "learned position embedding (top_query_embedding); dense layers with bias; GELU; logits from "
    "the word embedding"
)

# PanGu-α (Zeng et al. 2021): GPT-like pre-LN decoder with learned positions and a final
# "query layer" whose attention query is the next position's learned embedding (survey Eq. 3).
_PANGU_FAMILY = replace(
    UNSIZED,
    position=Position.LEARNED,
    max_position=1024,
    activation=Activation.GELU,
    qkv_bias=True,
    out_bias=True,
    mlp_bias=True,
    tied_embeddings=True,
    query_layer=True,
)

PANGU_ALPHA = ZooEntry(
    name="pangu-alpha",
    aliases=("pangu-α", "pangu-alpha-200b"),
    config=replace(
        _PANGU_FAMILY,
        name="pangu-alpha",
        vocab_size=40000,
        hidden=16384,
        layers=63,
        heads=128,
        ffn=65536,
    ),
    published_params=207_000_000_000,
    survey_params=survey_params(_PANGU_A.size),
    survey=_PANGU_A,
    claims=("causal decoder", "query layer", "layer norm", "40k BPE"),
    sources={
        **cite(
            "Zeng et al. 2021 (PanGu-α) Table 1: 200B model = 64 layers (the last is the query "
            "layer), hidden 16384, FFN 65536, 128 heads; 207.0B parameters",
            "layers",
            "hidden",
            "ffn",
            "heads",
            "published_params",
        ),
        **cite(
            "PanGu-α: 40,000-token BPE vocabulary; 1024-token sequences",
            "vocab_size",
            "max_position",
        ),
        **cite(
            _PANGU_CODE,
            "query_layer",
            "norm_placement",
            "activation",
            "qkv_bias",
            "tied_embeddings",
            "position",
        ),
    },
    notes=(
        "The paper's 64 layers count the query layer: 63 ordinary blocks + 1 query layer (the "
        "released code builds num_layers - 1 blocks).",
        "PE and activation are blank in the survey: learned positions and GELU from the released "
        "code.",
    ),
)

PANGU_SIGMA = ZooEntry(
    name="pangu-sigma",
    approximate=(
        (
            "its 640 experts as 40 domain groups of 16: the sources read here give neither the "
            "domain count nor the group size"
        ),
    ),
    aliases=("pangu-σ", "pangu-sigma-1085b"),
    config=replace(
        _PANGU_FAMILY,
        name="pangu-sigma",
        vocab_size=40000,
        hidden=5120,
        layers=39,
        heads=40,
        ffn=20480,
        activation=Activation.FAST_GELU,
        moe=MoeConfig(
            num_experts=640, top_k=1, expert_ffn=20480, first_dense=31, normalize=False, domains=40
        ),
    ),
    published_params=1_085_000_000_000,
    survey_params=survey_params(_PANGU_S.size),
    survey=_PANGU_S,
    claims=(
        "causal decoder",
        "random routed experts (RRE)",
        "fused layer norm",
        "FastGeLU",
        "extends PanGu-α",
    ),
    sources={
        **cite(
            "Ren et al. 2023 (PanGu-Σ): inherits PanGu-α 13B (40 layers incl. the query layer, "
            "hidden 5120, 40 heads, FFN 20480); survey Table 5 agrees (40 / 40 / 5120)",
            "layers",
            "hidden",
            "heads",
            "ffn",
            "query_layer",
        ),
        **cite(
            "Ren et al. 2023 Sec. 3: bottom layers shared and dense, top layers Random Routed "
            "Experts (experts grouped by domain; within its domain's group a token goes to one "
            "expert by a fixed random map, no learned gate; survey Sec. 3 agrees); 1.085T "
            "parameters",
            "moe",
            "published_params",
        ),
        **cite("Survey Table 5 (FastGeLU, MindSpore's x*sigmoid(1.702x))", "activation"),
        **cite("Not published for Σ: PanGu-α's 40,000-token vocabulary (our choice)", "vocab_size"),
    },
    notes=(
        "Random Routed Experts send each token to one expert of its domain's group by a fixed "
        "random map, with no learned gate: op moe_fixed_router reads an i64 [domains, vocab] "
        "table per sparse layer (drawn independently per layer) and the graph input domain_ids "
        "(`--domain` on the CLI, default 0).",
        "The expert layout is our reconstruction, not published dims: 8 sparse top layers of 640 "
        "experts (the FFN of the 13B base, 2 x 5120 x 20480 each) over 31 dense blocks; it "
        "reproduces the 1.085T total, which the paper states without a per-layer table.",
        "The query layer is kept from PanGu-α, and the vocabulary is PanGu-α's: both our reading "
        "of 'inherits PanGu-α'.",
    ),
)

CPM_2 = ZooEntry(
    name="cpm-2",
    aliases=("cpm2", "cpm-2-moe"),
    config=ModelConfig(
        name="cpm-2",
        arch=Arch.ENCODER_DECODER,
        vocab_size=26240,
        hidden=4096,
        layers=24,
        encoder_layers=24,
        heads=64,
        head_dim=64,
        ffn=10240,
        norm=Norm.RMS,
        norm_eps=1e-6,
        position=Position.RELATIVE,
        max_position=1024,
        attn_scale=1.0,
        activation=Activation.GELU_TANH,
        gated_mlp=True,
        moe=MoeConfig(num_experts=32, top_k=1, expert_ffn=10240, normalize=False),
    ),
    published_params=198_000_000_000,
    survey_params=survey_params(_CPM2.size),
    survey=_CPM2,
    claims=(
        "encoder-decoder",
        "span corruption",
        "MoE",
        "pre-RMS norm",
        "relative positions",
        "ReLU",
    ),
    sources={
        **cite(
            "Zhang et al. 2021 (CPM-2) model-size table: CPM-2 = 24 + 24 layers, d_model 4096, "
            "d_ff 10240, 64 heads, vocabulary 26,240; CPM-2-MoE = 198B with 32 experts (head size "
            "4096 / 64 = 64)",
            "layers",
            "encoder_layers",
            "hidden",
            "ffn",
            "heads",
            "head_dim",
            "vocab_size",
            "published_params",
        ),
        **cite(
            "CPM-2: T5/mT5-style encoder-decoder (pre-RMS, relative positions)", "norm", "position"
        ),
        **cite(
            "Closed detail, our choice: Switch-style top-1 routing in every FFN of both stacks; "
            "gated (mT5 GeGLU) FFN because the dense 11B count needs three matrices per FFN",
            "moe",
            "activation",
            "gated_mlp",
        ),
    },
    notes=(
        "The survey's vocab '250k' is mT5's; CPM-2's own vocabulary has 26,240 tokens.",
        "The survey says ReLU; the dense CPM-2 (11B) only adds up with a gated FFN (3 x 4096 x "
        "10240 per layer, as mT5-XXL, whose dims CPM-2 shares): GeGLU is our choice.",
        "The MoE layout is not fully published: 32 experts replacing every FFN in both stacks "
        "with top-1 (Switch-like) routing reproduces 198B (4.8B attention + 48 x 32 x 126M "
        "experts).",
    ),
)

# ERNIE 3.0 (Sun et al. 2021): a Transformer-XL backbone, post-LayerNorm (BERT-style), GELU.
# Every sublayer ends in its LayerNorm, so the last layer's norm is the stack's last: no final one.
_ERNIE_FAMILY = replace(
    UNSIZED,
    vocab_size=40000,
    layers=48,
    norm_placement=NormPlacement.POST,
    final_norm=False,
    position=Position.TRANSFORMER_XL,
    max_position=512,
    activation=Activation.GELU,
    qkv_bias=True,
    out_bias=True,
    mlp_bias=True,
    tied_embeddings=True,
)
_ERNIE_VOCAB = cite(
    "Not in the papers: 40,000 tokens as in Baidu's released ERNIE 3.0 checkpoints (our choice)",
    "vocab_size",
)
_ERNIE_FINAL_NORM = cite(
    "Post-LN stack with no LayerNorm after it, as Baidu's released ERNIE code builds it: "
    "PaddleNLP ErnieModel (paddlenlp/transformers/ernie/modeling.py at PaddlePaddle/PaddleNLP@"
    "63f84bde2ac12b4d3e9d8b51d4b0c9e3012b0cd5) stacks TransformerEncoderLayer(normalize_before="
    "False) in a TransformerEncoder given no final norm",
    "final_norm",
)
_ERNIE_XL = (
    "Transformer-XL backbone: relative attention with sinusoids of the distance projected per "
    "layer and learned biases u and v (Dai et al. 2019, Sec. 3.3). "
    + "u and v are per layer, as the released code builds them with `untie_r` (kimiyoung/"
    "transformer-xl, mem_transformer.py; sharing them would save 2 x heads x head_dim per layer). "
    "Segment recurrence memory is a training-time feature (the previous segment's hidden states, "
    "without gradient): it is not modelled; at inference the KV cache plays its part."
)

ERNIE_3 = ZooEntry(
    name="ernie-3.0",
    approximate=(
        ("the universal representation module only: the task-specific modules have another width"),
    ),
    aliases=("ernie3", "ernie-3.0-10b"),
    config=replace(_ERNIE_FAMILY, name="ernie-3.0", hidden=4096, heads=64, ffn=4 * 4096),
    published_params=10_000_000_000,
    survey_params=survey_params(_ERNIE3.size),
    survey=_ERNIE3,
    claims=(
        "Transformer-XL backbone",
        "post-layer norm",
        "relative positions",
        "GeLU",
        "WordPiece",
    ),
    sources={
        **cite(
            "Sun et al. 2021 (ERNIE 3.0) Sec. 3 (model settings): universal representation module "
            "48 layers, 4096 hidden, 64 heads; task-specific modules 12 layers, 768 hidden, 12 "
            "heads; 10B parameters",
            "layers",
            "hidden",
            "heads",
            "published_params",
        ),
        **cite(
            "ERNIE 3.0: Transformer-XL backbone; post-LayerNorm and GELU as in ERNIE/BERT; d_ff = "
            "4 d",
            "position",
            "norm_placement",
            "activation",
            "ffn",
        ),
        **_ERNIE_VOCAB,
        **_ERNIE_FINAL_NORM,
    },
    notes=(
        "Built as the universal representation module (48 x 4096) feeding the LM head; the two "
        "task-specific modules (12 layers of width 768 each, ~0.17B together) cannot share one "
        "width with it and are left out.",
        _ERNIE_XL,
        "The survey types ERNIE 3.0 as a causal decoder; its NLG task module is causal, its NLU "
        "module bidirectional. The zoo builds the causal (NLG) path.",
    ),
)

ERNIE_3_TITAN = ZooEntry(
    name="ernie-3.0-titan",
    approximate=(
        (
            "the universal representation module only: the task modules' dims, the FFN width and "
            "the vocabulary are unpublished (computed 95B of 260B)"
        ),
    ),
    aliases=("ernie-titan", "ernie-3.0-titan-260b"),
    config=replace(_ERNIE_FAMILY, name="ernie-3.0-titan", hidden=12288, heads=192, ffn=4 * 12288),
    published_params=260_000_000_000,
    survey_params=survey_params(_TITAN.size),
    survey=_TITAN,
    claims=(
        "Transformer-XL backbone",
        "post-layer norm",
        "relative positions",
        "GeLU",
        "WordPiece",
        "parallel attention",
    ),
    sources={
        **cite(
            "Wang et al. 2021 (ERNIE 3.0 Titan): universal representation module of 48 layers, "
            "hidden 12288, 192 heads; 260B parameters",
            "layers",
            "hidden",
            "heads",
            "published_params",
        ),
        **cite(
            "ERNIE 3.0 lineage: Transformer-XL backbone, post-LayerNorm, GELU, d_ff = 4 d (our "
            "choice: the Titan paper does not give its FFN width)",
            "position",
            "norm_placement",
            "activation",
            "ffn",
        ),
        **_ERNIE_VOCAB,
        **_ERNIE_FINAL_NORM,
    },
    notes=(
        _ERNIE_XL,
        "The survey's findings table gives Titan's row 'parallel attention + FF layers train 15% "
        "faster with the same performance as sequential layers'. The Titan paper describes no "
        "parallel block: it scales ERNIE 3.0, whose Transformer-XL layers run attention then "
        "FFN, so the entry stays sequential. The bullet reads as the next row's, GPT-NeoX-20B "
        "(parallel attention + FF), with PaLM's figure (Sec. 2: ~15% faster training at large "
        "scale).",
    ),
    params_note=(
        "The Titan paper (Wang et al. 2021, Sec. 3) publishes only the universal module's depth, "
        "width and heads (48 / 12288 / 192); its FFN width, the task-specific modules' dims and "
        "the vocabulary are not published. 48 layers of a standard 4d-FFN block at width 12288 "
        "give ~87B; the rest of the 260B lives in those undisclosed parts, so the count cannot be "
        "reproduced."
    ),
)

YUAN_1 = ZooEntry(
    name="yuan-1.0",
    aliases=("yuan", "yuan-1.0-245b"),
    config=ModelConfig(
        name="yuan-1.0",
        vocab_size=53228,
        hidden=16384,
        layers=76,
        heads=128,
        ffn=4 * 16384,
        position=Position.LEARNED,
        max_position=2048,
        activation=Activation.GELU,
        qkv_bias=True,
        out_bias=True,
        mlp_bias=True,
        tied_embeddings=True,
    ),
    published_params=245_730_000_000,
    survey_params=survey_params(_YUAN.size),
    survey=_YUAN,
    claims=("causal decoder",),
    sources={
        **cite(
            "Wu et al. 2021 (Yuan 1.0) model-size table: 245B model = 76 layers, hidden 16384, "
            "sequence length 2048, 245.73B parameters",
            "layers",
            "hidden",
            "max_position",
            "published_params",
        ),
        **cite(
            "Yuan 1.0: GPT-3-style language model (pre-LN, learned positions, GELU, 4d FFN, "
            "biases, tied head)",
            "ffn",
            "norm_placement",
            "position",
            "activation",
            "tied_embeddings",
        ),
        **cite(
            "Not published: 128 heads of 128 (our choice, heads do not change the count)", "heads"
        ),
        **cite(
            "Not published in the paper: 53,228 tokens as in Inspur's released Yuan 1.0 "
            "vocabulary (our recollection; the total moves by 0.4% per 60k tokens)",
            "vocab_size",
        ),
    },
    notes=(
        "The survey gives only nL 76 and HS 16384; everything else follows the paper's GPT-3-style "
        "description, with heads and vocabulary as marked choices.",
    ),
)

GLM_130B = ZooEntry(
    name="glm-130b",
    aliases=("glm", "glm130b"),
    config=ModelConfig(
        name="glm-130b",
        arch=Arch.PREFIX_LM,
        vocab_size=150528,
        hidden=12288,
        layers=70,
        heads=96,
        ffn=32768,
        norm_placement=NormPlacement.DEEPNORM,
        deepnorm_alpha=(2 * 70) ** 0.5,
        embedding_norm=True,
        final_norm=False,
        position=Position.ROTARY,
        rotary=RotaryConfig(),
        max_position=2048,
        activation=Activation.GELU,
        gated_mlp=True,
        qkv_bias=True,
        out_bias=True,
        mlp_bias=True,
        tied_embeddings=True,
        bos_token_id=150004,
        eos_token_id=150005,
        pad_token_id=150000,
    ),
    published_params=130_000_000_000,
    survey_params=survey_params(_GLM.size),
    survey=_GLM,
    claims=(
        "non-causal decoder",
        "autoregressive blank infilling",
        "DeepNorm",
        "RoPE",
        "GeGLU",
        "bias",
    ),
    sources={
        **cite(
            "Zeng et al. 2022 (GLM-130B) Sec. 2.1 and its configuration appendix: 70 layers, "
            "hidden 12288, 96 heads, FFN 32768 (8/3 d, GeGLU), 2048 tokens, 130B parameters",
            "layers",
            "hidden",
            "heads",
            "ffn",
            "max_position",
            "published_params",
            "activation",
            "gated_mlp",
        ),
        **cite(
            "GLM-130B Sec. 2.1: Post-LN with DeepNorm, alpha = (2N)^(1/2); RoPE; bidirectional "
            "attention over the context, causal over the blanks",
            "norm_placement",
            "deepnorm_alpha",
            "position",
            "arch",
        ),
        **cite(
            "THUDM/GLM-130B configs (--layernorm-order post) on SwissArmyTransformer's layer: y = "
            "alpha*LN_in(x) + Attn(LN_in(x)), z = LN_post(y), out = alpha*z + MLP(z), then a "
            "final LN. That is LN(alpha*x + f(x)) per sublayer (our DEEPNORM) with the chain of "
            "norms shifted by one: the first layer's LN_in normalises the embedding "
            "(embedding_norm) and the last layer's norm is the final LN (final_norm off)",
            "embedding_norm",
            "final_norm",
        ),
        **cite(
            "THUDM/GLM-130B release: icetk tokenizer, padded vocabulary 150,528; tied output layer",
            "vocab_size",
            "tied_embeddings",
        ),
    },
    notes=(
        "The survey's vocab '130k' does not match the released icetk vocabulary (150,528 rows).",
        "RoPE is applied to the full head (1D positions): our reading; the original GLM's 2D "
        "positions are not used by GLM-130B.",
        "Special-token ids follow icetk's layout as we recall it; our choice.",
    ),
)

ENTRIES: list[ZooEntry] = [
    PANGU_ALPHA,
    PANGU_SIGMA,
    CPM_2,
    ERNIE_3,
    ERNIE_3_TITAN,
    YUAN_1,
    GLM_130B,
]
