"""Typed architecture configs: every architectural axis is an explicit enum field.

A `ModelConfig` says everything the builder needs, nothing else; `validate()`
rejects impossible combinations with an actionable message, and
`ModelConfig.from_dict` rejects unknown keys. Zoo entries, tiny twins and
Hugging Face imports all produce one of these and go through one builder.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from irgraph.errors import ConfigError


class Arch(enum.Enum):
    DECODER = "decoder"  # causal decoder-only (GPT-3, LLaMA)
    PREFIX_LM = "prefix_lm"  # non-causal decoder: bidirectional prefix (U-PaLM, GLM-130B)
    ENCODER_DECODER = "encoder_decoder"  # T5, UL2, AlexaTM, AlphaCode, CodeT5+


class Norm(enum.Enum):
    LAYER = "layer"
    RMS = "rms"


class NormPlacement(enum.Enum):
    PRE = "pre"  # x + f(norm(x))
    POST = "post"  # norm(x + f(x)) (original Transformer, ERNIE 3.0)
    DEEPNORM = "deepnorm"  # norm(alpha·x + f(x)) (GLM-130B; Wang et al. 2022)
    # x + post_norm(f(pre_norm(x))): Grok-1's four norms per layer; the extra norms are
    # layers.{i}.attn_post_norm and layers.{i}.mlp_post_norm
    SANDWICH = "sandwich"


class Position(enum.Enum):
    LEARNED = "learned"  # absolute learned table (GPT-3, OPT)
    ROTARY = "rotary"  # RoPE (GPT-NeoX, LLaMA, PaLM)
    ALIBI = "alibi"  # ALiBi bias (BLOOM)
    RELATIVE = "relative"  # T5 relative-position buckets: a learned bias per head and bucket
    # Transformer-XL (Dai et al. 2019): sinusoids of the distance projected per layer, learned
    # biases u and v per layer (Gopher, Chinchilla, ERNIE 3.0)
    TRANSFORMER_XL = "transformer_xl"
    NONE = "none"


class Block(enum.Enum):
    SEQUENTIAL = "sequential"  # x + attn(...), then + mlp(...)
    PARALLEL = (
        "parallel"  # x + attn(LN(x)) + mlp(LN(x)), one shared norm (PaLM, GPT-J, CodeGen, Falcon)
    )
    PARALLEL_TWO_NORMS = "parallel_two_norms"  # x + attn(LN1(x)) + mlp(LN2(x)) (GPT-NeoX)


class Activation(enum.Enum):
    """Keys of irgraph.ops.elementwise.ACTIVATIONS."""

    RELU = "relu"
    RELU2 = "relu2"
    GELU = "gelu"
    GELU_TANH = "gelu_tanh"
    FAST_GELU = "fast_gelu"
    SILU = "silu"
    SIGMOID = "sigmoid"


class AttentionKind(enum.Enum):
    """Which keys a layer's queries see (within the causal / prefix rule)."""

    DENSE = "dense"  # every key
    LOCAL = "local"  # a band: the `span` most recent keys, itself included (GPT-3's sparse layers)
    STRIDED = "strided"  # keys at distances that are multiples of `span` (Child et al. 2019)


@dataclass(frozen=True)
class LayerAttention:
    kind: AttentionKind = AttentionKind.DENSE
    span: int = 0  # LOCAL: band width in tokens; STRIDED: stride; DENSE: 0


class RopeScaling(enum.Enum):
    NONE = "none"
    LINEAR = "linear"
    DYNAMIC_NTK = "dynamic_ntk"
    LLAMA3 = "llama3"
    YARN = "yarn"


@dataclass(frozen=True)
class RotaryConfig:
    fraction: float = 1.0  # share of head_dim that rotates (GPT-NeoX 0.25, Nemotron 0.5)
    interleaved: bool = False  # pairs (2i, 2i+1): GPT-J, PaLM, DeepSeek-v2; else rotate-half
    base: float = 10000.0
    scaling: RopeScaling = RopeScaling.NONE
    factor: float = 1.0
    original_max_position: int = 0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0
    mscale_all_dim: float = 0.0


@dataclass(frozen=True)
class MoeConfig:
    """Routed MLP layout. In an encoder-decoder model it applies to both stacks (CPM-2-MoE)."""

    num_experts: int
    top_k: int
    expert_ffn: int  # hidden width of one routed expert
    every: int = 1  # MoE MLP in every `every`-th layer (GLaM: 2), dense MLP elsewhere
    first_dense: int = 0  # the first layers keep a dense MLP (DeepSeek-v2: 1)
    shared_experts: int = 0  # always-on experts, summed with the routed output (DeepSeek)
    scoring: str = "softmax"  # softmax | sigmoid
    normalize: bool = True  # renormalise the kept top-k weights (Mixtral)
    n_group: int = 1
    topk_group: int = 1
    scaling: float = 1.0  # routed_scaling_factor
    residual_dense: bool = False  # Arctic: a dense MLP in parallel with the MoE MLP, both added
    gated: bool | None = (
        None  # experts gated? None = as the dense MLP (gated_mlp); GLaM: dense GeGLU, plain experts
    )
    # PanGu-Σ's Random Routed Experts: `domains` > 0 splits the experts into that many equal
    # groups, and each token goes to one expert of its row's domain (graph input domain_ids) by
    # a fixed random (domain, token) -> expert table instead of a learned router (top_k 1)
    domains: int = 0


@dataclass(frozen=True)
class MlaConfig:
    """DeepSeek-v2 multi-head latent attention dims."""

    kv_rank: int  # kv_lora_rank: the cached latent width (512)
    q_rank: int = 0  # q_lora_rank: 0 = q projected directly (V2-Lite), else low-rank (1536)
    nope_dim: int = 128  # qk_nope_head_dim
    rope_dim: int = 64  # qk_rope_head_dim: the shared rotated key part, cached
    v_dim: int = 128  # v_head_dim


@dataclass(frozen=True)
class ModelConfig:
    """One architecture. Dims are the model's; `ffn` is the dense MLP hidden width."""

    name: str
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    kv_heads: int = 0  # 0 = heads (MHA); 1 = multi-query; else grouped-query
    head_dim: int = 0  # 0 = hidden // heads
    arch: Arch = Arch.DECODER
    encoder_layers: int = 0  # encoder-decoder: encoder depth (`layers` is the decoder's)
    # CodeT5+'s shallow encoder is narrower than its decoder: encoder width, heads and MLP width
    # (0 = the decoder's; with encoder_heads set, the encoder's head_dim is encoder_hidden //
    # encoder_heads, else the decoder's). When the widths differ the encoder has its own
    # `encoder.embed.weight` [vocab, encoder_hidden] and its output goes through
    # `encoder.proj.weight/.bias` [hidden, encoder_hidden] before cross-attention.
    encoder_hidden: int = 0
    encoder_heads: int = 0
    encoder_ffn: int = 0
    cross_attention_layers: int = (
        0  # only the top N decoder layers cross-attend (CodeT5+: 1); 0 = all
    )
    # The encoder's own context (learned position rows; AlphaCode: 1536 against the decoder's
    # 768) and rotary settings (CodeT5+: CodeGen-350M rotates half of each head); 0 / None = the
    # decoder's max_position / rotary.
    encoder_max_position: int = 0
    encoder_rotary: RotaryConfig | None = None
    norm: Norm = Norm.LAYER
    norm_placement: NormPlacement = NormPlacement.PRE
    norm_eps: float = 1e-5
    norm_weight_offset: float = 0.0  # Nemotron's layernorm1p stores w - 1
    final_norm: bool = True
    embedding_norm: bool = False  # a norm right after the token embedding (BLOOM)
    position: Position = Position.LEARNED
    max_position: int = 2048  # learned table rows / context length
    rotary: RotaryConfig | None = None
    relative_buckets: int = 32
    relative_max_distance: int = 128
    # RELATIVE: one bucket table per layer (GLaM's "per-layer relative positional bias") instead
    # of T5's one table per stack, computed in the first layer and shared
    relative_per_layer: bool = False
    activation: Activation = Activation.GELU
    gated_mlp: bool = False  # act(x·W_g)·(x·W_u) (SwiGLU, GeGLU)
    block: Block = Block.SEQUENTIAL
    qkv_bias: bool = False
    out_bias: bool = False  # attention output projection bias
    mlp_bias: bool = False
    norm_bias: bool = True  # layer_norm has a bias (ignored for rms)
    lm_head_bias: bool = False
    tied_embeddings: bool = False
    attn_scale: float | None = None  # softmax scale; None = 1/sqrt(head_dim)
    attn_softcap: float = 0.0  # Grok-1: 30·tanh(s/30)
    sliding_window: int = 0
    # per-layer attention kinds, cycled: layer i uses attention_pattern[i % len] (GPT-3: dense,
    # local); () = dense in every layer (with sliding_window, if set)
    attention_pattern: tuple[LayerAttention, ...] = ()
    embedding_scale: float = 1.0  # multiply token embeddings (Gemma/Grok-style); 1 = none
    logit_scale: float = 1.0  # multiply the final logits (e.g. Grok-1 output multiplier); 1 = none
    deepnorm_alpha: float = (
        0.0  # DEEPNORM placement: residual multiplier α; 0 = computed (2N)^(1/4)
    )
    query_layer: bool = (
        False  # PanGu-α: a final attention layer queried by a learned position embedding
    )
    moe: MoeConfig | None = None
    mla: MlaConfig | None = None
    decoder_start_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def layer_mask(self, layer: int) -> tuple[int, int]:
        """(window, stride) of the attention attrs for layer `layer` of a stack."""
        if not self.attention_pattern:
            return self.sliding_window, 0
        spec = self.attention_pattern[layer % len(self.attention_pattern)]
        if spec.kind is AttentionKind.LOCAL:
            return spec.span, 0
        return 0, spec.span if spec.kind is AttentionKind.STRIDED else 0

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # Sub-configs a sub-builder cannot work without: the builder picks the sub-builder by the
    # config's kind, and these give it the settings typed, or say which field is missing.

    def require_rotary(self, user: str) -> RotaryConfig:
        return _required(self.rotary, "rotary", user, self.name)

    def require_moe(self, user: str) -> MoeConfig:
        return _required(self.moe, "moe", user, self.name)

    def require_mla(self, user: str) -> MlaConfig:
        return _required(self.mla, "mla", user, self.name)

    def validate(self) -> ModelConfig:
        """Raise ConfigError naming the field for an impossible combination; return self."""

        def need(cond: bool, key: str, message: str, got: Any) -> None:
            if not cond:
                raise ConfigError(message, got=got, where=f"{self.name}: {key}")

        for key in ("vocab_size", "hidden", "layers", "heads", "ffn"):
            need(getattr(self, key) > 0, key, "must be positive", getattr(self, key))
        need(0 < self.norm_eps < 1, "norm_eps", "must be in (0, 1)", self.norm_eps)
        need(
            self.rotary is None or 0 < self.rotary.base < math.inf,
            "rotary.base",
            "must be positive and finite",
            self.rotary and self.rotary.base,
        )
        moe = self.moe
        need(
            moe is None
            or moe.domains == 0
            or (moe.num_experts % moe.domains == 0 and moe.top_k == 1),
            "moe.domains",
            "random routed experts need domains dividing num_experts, and top_k 1",
            moe and (moe.domains, moe.num_experts, moe.top_k),
        )
        need(
            moe is None or moe.domains == 0 or self.arch is not Arch.ENCODER_DECODER,
            "moe.domains",
            "random routed experts are built for decoder stacks only",
            self.arch,
        )
        need(
            self.heads % self.n_kv_heads == 0,
            "kv_heads",
            f"must divide heads ({self.heads})",
            self.kv_heads,
        )
        need(
            self.head_dim > 0 or self.hidden % self.heads == 0,
            "head_dim",
            f"hidden ({self.hidden}) is not a multiple of heads; set head_dim",
            self.heads,
        )
        need(
            (self.position is Position.ROTARY) == (self.rotary is not None) or self.mla is not None,
            "rotary",
            "rotary settings go with position=rotary (and only then)",
            self.rotary,
        )
        need(
            self.arch is Arch.ENCODER_DECODER or self.encoder_layers == 0,
            "encoder_layers",
            "only encoder-decoder models have encoder layers",
            self.encoder_layers,
        )
        need(
            self.arch is not Arch.ENCODER_DECODER or self.encoder_layers > 0,
            "encoder_layers",
            "an encoder-decoder model needs encoder layers",
            self.encoder_layers,
        )
        need(
            self.encoder_rotary is None or self.position is Position.ROTARY,
            "encoder_rotary",
            "rotary settings go with position=rotary (and only then)",
            self.encoder_rotary,
        )
        for key in (
            "encoder_hidden",
            "encoder_heads",
            "encoder_ffn",
            "cross_attention_layers",
            "encoder_max_position",
            "encoder_rotary",
        ):
            need(
                not getattr(self, key) or self.arch is Arch.ENCODER_DECODER,
                key,
                "only encoder-decoder models set it",
                getattr(self, key),
            )
        if self.encoder_heads:  # the encoder's head_dim is then encoder_hidden // encoder_heads
            enc_hidden = self.encoder_hidden or self.hidden
            need(
                enc_hidden % self.encoder_heads == 0,
                "encoder_heads",
                f"must divide encoder_hidden ({enc_hidden})",
                self.encoder_heads,
            )
        need(
            0 <= self.cross_attention_layers <= self.layers,
            "cross_attention_layers",
            f"must be in 0..layers ({self.layers})",
            self.cross_attention_layers,
        )
        need(
            self.norm_placement is not NormPlacement.DEEPNORM or self.block is Block.SEQUENTIAL,
            "norm_placement",
            "DeepNorm applies to sequential blocks",
            self.block,
        )
        if self.moe is not None:
            need(
                0 < self.moe.top_k <= self.moe.num_experts,
                "moe.top_k",
                "must be in 1..num_experts",
                self.moe.top_k,
            )
            need(
                self.moe.scoring in ("softmax", "sigmoid"),
                "moe.scoring",
                "softmax | sigmoid",
                self.moe.scoring,
            )
        for i, spec in enumerate(self.attention_pattern):
            need(
                (spec.span > 0) == (spec.kind is not AttentionKind.DENSE),
                f"attention_pattern[{i}].span",
                "local and strided layers need a positive span; dense layers none",
                spec,
            )
        need(
            self.sliding_window >= 0,
            "sliding_window",
            "a window of at least 1 token, or 0 for none",
            self.sliding_window,
        )
        need(
            not (self.attention_pattern and self.sliding_window),
            "sliding_window",
            "a window in every layer and a per-layer attention_pattern exclude each other",
            self.sliding_window,
        )
        if self.mla is not None:
            need(
                self.position is Position.ROTARY,
                "position",
                "MLA carries its own rotary part: position=rotary",
                self.position,
            )
        return self

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ModelConfig:
        """Build from plain data (enum values as strings); unknown keys are rejected by name."""
        return _from_dict(ModelConfig, data, "config").validate()

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)


UNSIZED = ModelConfig(name="", vocab_size=0, hidden=0, layers=0, heads=0, ffn=0)
"""Every axis at its default and no dims: the root of a family of zoo entries.

A family refines it with the axes its members share, `_LLAMA = dataclasses.replace(UNSIZED,
norm=Norm.RMS, ...)`, and each member refines the family with its name and dims,
`dataclasses.replace(_LLAMA, name="llama", vocab_size=32000, ...)`; mypy checks every keyword
of `dataclasses.replace` against the field's type. A member that forgets a dim keeps 0, which
`validate()` rejects by name.
"""

_T = TypeVar("_T")


def _required(value: _T | None, key: str, user: str, model: str) -> _T:
    if value is None:
        raise ConfigError(f"{user} needs {key} settings", where=f"{model}: {key}")
    return value


_ENUMS = {
    e.__name__: e
    for e in (Arch, Norm, NormPlacement, Position, Block, Activation, RopeScaling, AttentionKind)
}
_NESTED = {
    "rotary": RotaryConfig,
    "encoder_rotary": RotaryConfig,
    "moe": MoeConfig,
    "mla": MlaConfig,
}


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}", expected=", ".join(fields), where=where
        )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        ftype = fields[key].type
        if key in _NESTED and value is not None:
            value = _from_dict(_NESTED[key], value, f"{where}.{key}")
        elif key == "attention_pattern":
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) for v in value):
                raise ConfigError(
                    "bad value for attention_pattern",
                    expected='a list of {"kind": ..., "span": ...}',
                    got=value,
                    where=where,
                )
            value = tuple(
                _from_dict(LayerAttention, v, f"{where}.{key}[{i}]") for i, v in enumerate(value)
            )
        else:
            enum_cls = _ENUMS.get(str(ftype))
            if enum_cls is not None:
                try:
                    value = enum_cls(value)
                except ValueError:
                    raise ConfigError(
                        f"bad value for {key}",
                        expected=" | ".join(e.value for e in enum_cls),
                        got=value,
                        where=where,
                    ) from None
        kwargs[key] = value
    return cls(**kwargs)


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


@dataclass(frozen=True)
class Survey:
    """The survey's Table 5 row, verbatim ("" where the survey leaves the cell blank or "—")."""

    size: str = ""
    type: str = ""
    objective: str = ""
    attention: str = ""
    vocab: str = ""
    tokenizer: str = ""
    norm: str = ""
    pe: str = ""
    activation: str = ""
    bias: str = ""
    layers: str = ""
    heads: str = ""
    hidden: str = ""


@dataclass(frozen=True)
class ZooEntry:
    """A surveyed model: its published architecture, each number's source, and the survey's view."""

    name: str
    config: ModelConfig  # the published architecture
    published_params: int  # the paper's total parameter count
    survey_params: int  # the survey's figure
    survey: Survey  # Table 5 row (empty Survey() for models outside Table 5)
    claims: tuple[
        str, ...
    ]  # what the survey says about the model: "parallel attention", "ALiBi", ...
    sources: dict[
        str, str
    ]  # field name (or "all") -> citation: paper section/table or released config
    notes: tuple[str, ...] = ()  # disagreements with the survey, closed details and the choice made
    params_note: str = (
        ""  # why computed params miss published_params (at most 5 entries may need one)
    )
    aliases: tuple[str, ...] = ()
    # parameters one token runs through (MoE), as its makers publish it; 0 where none is published
    published_active: int = 0
    # what the entry builds only approximately: "what — why", shown by `irgraph zoo list`
    approximate: tuple[str, ...] = ()
    tiny_overrides: dict[str, Any] = field(
        default_factory=dict
    )  # fields the tiny twin sets explicitly
