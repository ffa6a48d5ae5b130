"""Builder wiring that no Hugging Face parity test covers, pinned against the models' own code.

The tests follow values through built graphs (which value feeds which norm) and, where a
wrong wiring would still type-check, compare numbers:
- Snowflake Arctic (parallel_attn_mlp_res in its modeling code): the MoE reads the layer input
  through post_attention_layernorm, in parallel with attention; the dense residual MLP reads
  the attention output through its own residual_layernorm.
- PanGu-α (MindSpore pangu_alpha.py): the final layernorm normalises the last block's output,
  then comes the query layer, then the tied head with no norm in between.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import irgraph
from irgraph.errors import ConfigError
from irgraph.ir import Graph, Node, Value
from irgraph.model_zoo import build_graph
from irgraph.model_zoo.config import (
    Activation,
    Arch,
    Block,
    MlaConfig,
    ModelConfig,
    MoeConfig,
    Norm,
    NormPlacement,
    Position,
    RopeScaling,
    RotaryConfig,
)
from irgraph.weights import WeightStore

ARCTIC = ModelConfig(
    name="arctic-like",
    vocab_size=256,
    hidden=32,
    layers=2,
    heads=4,
    kv_heads=2,
    ffn=48,
    norm=Norm.RMS,
    position=Position.ROTARY,
    rotary=RotaryConfig(),
    activation=Activation.SILU,
    gated_mlp=True,
    moe=MoeConfig(num_experts=4, top_k=2, expert_ffn=16, residual_dense=True),
)
PANGU = ModelConfig(
    name="pangu-like",
    vocab_size=256,
    hidden=32,
    layers=2,
    heads=4,
    ffn=64,
    query_layer=True,
    tied_embeddings=True,
    qkv_bias=True,
    out_bias=True,
    mlp_bias=True,
)


def _user_of(graph: Graph, param: str) -> Node:
    """The one node that takes parameter `param` as an input."""
    users = [n for n in graph.nodes if any(v is not None and v.param == param for v in n.inputs)]
    assert len(users) == 1, (param, users)
    return users[0]


def _depends_on(graph: Graph, value: Value, param: str) -> bool:
    producers, seen, todo = graph.producers(), set(), [value]
    while todo:
        v = todo.pop()
        if v is None or id(v) in seen:
            continue
        seen.add(id(v))
        if v.param == param:
            return True
        if v in producers:
            todo.extend(producers[v].inputs)
    return False


def test_arctic_moe_reads_the_layer_input_and_the_dense_mlp_the_attention_output():
    g = build_graph(ARCTIC, weights=None)
    for i in range(ARCTIC.layers):
        attn_norm = _user_of(g, f"layers.{i}.attn_norm.weight")
        moe_norm = _user_of(g, f"layers.{i}.mlp_norm.weight")
        dense_norm = _user_of(g, f"layers.{i}.residual_norm.weight")
        assert moe_norm.inputs[0] is attn_norm.inputs[0]  # beside attention, on the layer input
        assert _user_of(g, f"layers.{i}.moe.router.weight").inputs[0] is moe_norm.outputs[0]
        assert _depends_on(g, dense_norm.inputs[0], f"layers.{i}.attn.o.weight")
        assert _user_of(g, f"layers.{i}.mlp.up.weight").inputs[0] is dense_norm.outputs[0]


def test_arctic_moe_branch_is_independent_of_attention():
    """With one layer and no final norm, logits are linear in the branch sum, so removing the MoE
    (zero expert down-projections) subtracts the same amount whether or not attention and the
    dense MLP are there: the MoE input is the layer input, not the attention output."""
    cfg = ARCTIC.replace(layers=1, final_norm=False)
    g = build_graph(cfg, seed=1)
    ids = np.array([[3, 9, 27, 81, 200]])

    def logits(*zero: str) -> np.ndarray:
        arrays = {k: np.zeros_like(g.weight(k)) if k in zero else g.weight(k) for k in g.params}
        return irgraph.interpret(
            dataclasses.replace(g, weights=WeightStore.from_arrays(arrays)), ids
        )

    moe, attn, dense = (
        "layers.0.moe.experts.down",
        "layers.0.attn.o.weight",
        "layers.0.mlp.down.weight",
    )
    with_attention = logits() - logits(moe)
    without_attention = logits(attn, dense) - logits(attn, dense, moe)
    assert np.abs(with_attention).max() > 1e-2  # the MoE branch contributes
    np.testing.assert_allclose(with_attention, without_attention, atol=1e-5)


def test_arctic_layout_needs_sequential_pre_norm_blocks():
    with pytest.raises(ConfigError, match="residual_dense"):
        build_graph(ARCTIC.replace(block=Block.PARALLEL), weights=None)


def test_pangu_final_norm_sits_below_the_query_layer():
    g = build_graph(PANGU, weights=None)
    final_norm = _user_of(g, "norm.weight")
    assert _user_of(g, "query_layer.attn_norm.weight").inputs[0] is final_norm.outputs[0]
    assert not _depends_on(g, final_norm.inputs[0], "query_layer.attn.o.weight")
    head = next(n for n in g.nodes if g.outputs["logits"] in n.outputs)
    assert head.op == "linear" and head.inputs[1].param == "embed.weight"  # tied head
    top = g.producers()[head.inputs[0]]
    assert top.op == "add" and _depends_on(g, top.outputs[0], "query_layer.mlp.down.weight")
    assert _user_of(g, "query_layer.embed.weight").op == "embedding"


def test_pangu_like_decodes_like_full_recompute():
    g = build_graph(PANGU, seed=2)
    ids = np.array([[5, 17, 99, 200, 3, 42]])
    full, cached = irgraph.interpret(g, ids), irgraph.interpret(g, ids, decode=True)
    np.testing.assert_allclose(cached, full, atol=1e-5)


def test_glm_130b_normalises_the_embedding_and_ends_on_the_last_layer_norm():
    """GLM-130B (SwissArmyTransformer, layernorm order 'post' with DeepNorm): every sublayer reads a
    normalised stream, starting with the embedding, and the last layer's norm is the final norm."""
    from irgraph import model_zoo

    g = model_zoo.build("glm-130b", weights=False)
    last = model_zoo.config("glm-130b", "tiny").layers - 1
    q = _user_of(g, "layers.0.attn.q.weight")
    assert g.producers()[q.inputs[0]] is _user_of(g, "embed_norm.weight")
    head = next(n for n in g.nodes if g.outputs["logits"] in n.outputs)
    assert g.producers()[head.inputs[0]] is _user_of(g, f"layers.{last}.mlp_norm.weight")
    assert "norm.weight" not in g.params


@pytest.mark.parametrize("name", ["ernie-3.0", "ernie-3.0-titan"])
def test_ernie_post_norm_stack_ends_on_the_last_layer_norm(name):
    """ERNIE's post-LN layers (PaddleNLP ErnieModel: normalize_before=False, no final norm): the
    LM head reads the last layer's MLP norm."""
    from irgraph import model_zoo

    g = model_zoo.build(name, weights=False)
    last = model_zoo.config(name, "tiny").layers - 1
    head = next(n for n in g.nodes if g.outputs["logits"] in n.outputs)
    assert g.producers()[head.inputs[0]] is _user_of(g, f"layers.{last}.mlp_norm.weight")
    assert "norm.weight" not in g.params


def test_mla_norms_keep_rmsnorm_default_eps(tmp_path, monkeypatch):
    """DeepSeek-v2's q_a/kv_a norms use eps 1e-6 whatever rms_norm_eps is (transformers and the
    released modeling code build them without the config's eps); the imported graph agrees."""
    from irgraph.model_zoo.hf_import import import_hf
    from tests.helpers import hf_tiny

    cls, kwargs = hf_tiny.CASES["deepseek_v2-lite"]
    monkeypatch.setitem(hf_tiny.CASES, "mla-eps", (cls, dict(kwargs, rms_norm_eps=0.25)))
    model = hf_tiny.make_model("mla-eps")
    graph = import_hf(hf_tiny.save_model(model, tmp_path / "mla"))
    eps = {
        n.attrs["eps"] for n in graph.nodes if n.op == "rms_norm" and "_a_norm" in n.inputs[1].param
    }
    assert eps == {1e-6}
    ids = np.random.default_rng(0).integers(0, hf_tiny.VOCAB, size=(1, 6))
    ours, ref = irgraph.interpret(graph, ids), hf_tiny.hf_logits(model, ids, decode=False)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def _random_config(rng: np.random.Generator, k: int) -> ModelConfig:
    """A seeded draw over every ModelConfig axis (tiny dims); rejected combinations are allowed."""

    def pick(options):
        return options[rng.integers(len(options))]

    mla = pick(
        [None, None, MlaConfig(kv_rank=16, q_rank=pick([0, 24]), nope_dim=8, rope_dim=4, v_dim=8)]
    )
    position = Position.ROTARY if mla else pick(list(Position))
    rotary = None
    if position is Position.ROTARY:
        scaling = pick(list(RopeScaling))
        # Dynamic NTK rescales with the current length, so its cache differs from a recompute once
        # the length passes the original context: keep that context above the test length.
        original = {RopeScaling.NONE: 0, RopeScaling.LINEAR: 0, RopeScaling.DYNAMIC_NTK: 16}.get(
            scaling, 4
        )
        yarn = scaling is RopeScaling.YARN
        rotary = RotaryConfig(
            fraction=pick([1.0, 0.5]),
            interleaved=bool(rng.integers(2)),
            scaling=scaling,
            factor=1.0 if scaling is RopeScaling.NONE else 4.0,
            original_max_position=original,
            mscale=0.707 if yarn else 1.0,
            mscale_all_dim=0.707 if yarn else 0.0,
        )
    moe = pick(
        [
            None,
            MoeConfig(4, 2, 16, every=2),
            MoeConfig(4, 1, 16, residual_dense=True),
            MoeConfig(
                4,
                2,
                16,
                first_dense=1,
                shared_experts=1,
                scoring="sigmoid",
                normalize=False,
                n_group=2,
                scaling=1.5,
            ),
            MoeConfig(4, 2, 16, gated=False),
        ]
    )
    arch = pick(list(Arch))
    block = pick(list(Block))
    placement = pick(list(NormPlacement)) if block is Block.SEQUENTIAL else NormPlacement.PRE
    if moe is not None and moe.residual_dense and placement is not NormPlacement.PRE:
        moe = None  # Arctic's layout is sequential pre-norm (refusal tested below)
    flag = lambda p=0.5: bool(rng.random() < p)  # noqa: E731
    return ModelConfig(
        name=f"draw{k}",
        vocab_size=256,
        hidden=32,
        layers=2,
        heads=4,
        ffn=48,
        kv_heads=pick([0, 1, 2]),
        arch=arch,
        encoder_layers=2 if arch is Arch.ENCODER_DECODER else 0,
        norm=pick(list(Norm)),
        norm_placement=placement,
        norm_weight_offset=pick([0.0, 1.0]),
        final_norm=flag(0.8),
        embedding_norm=flag(0.2),
        position=position,
        max_position=64,
        rotary=rotary,
        activation=pick(list(Activation)),
        gated_mlp=flag(),
        block=block,
        qkv_bias=flag(),
        out_bias=flag(),
        mlp_bias=flag(),
        norm_bias=flag(),
        lm_head_bias=flag(0.3),
        tied_embeddings=flag(),
        attn_scale=pick([None, 1.0]),
        attn_softcap=pick([0.0, 30.0]),
        sliding_window=pick([0, 0, 3]),
        embedding_scale=pick([1.0, 2.0]),
        logit_scale=pick([1.0, 0.5]),
        query_layer=flag(0.2),
        moe=moe,
        mla=mla,
    )


def test_random_configs_build_verify_and_decode_like_full_recompute():
    """Every combination the builder accepts verifies, gives finite non-degenerate logits and caches
    exactly; every other one is refused with a ConfigError naming the field (nothing dropped
    silently)."""
    rng, ids = np.random.default_rng(7), np.array([[5, 17, 99, 200, 3, 42, 7]])
    built = 0
    for k in range(120):
        cfg = _random_config(rng, k)
        try:
            graph = build_graph(cfg, seed=k)
        except ConfigError as err:
            assert f"draw{k}: " in str(err)
            continue
        kw: dict = {}
        if cfg.arch is Arch.ENCODER_DECODER:
            kw["encoder_ids"] = ids[:, :5]
        if cfg.arch is Arch.PREFIX_LM:
            kw["prefix_len"] = np.array([3])
        full = irgraph.interpret(graph, ids, **kw)
        assert np.isfinite(full).all() and full.std() > 1e-3, cfg
        np.testing.assert_allclose(
            irgraph.interpret(graph, ids, decode=True, **kw), full, atol=1e-5, err_msg=str(cfg)
        )
        built += 1
    assert built >= 60


@pytest.mark.parametrize(
    "changes, key",
    [
        (dict(arch=Arch.ENCODER_DECODER, encoder_layers=1, mla=MlaConfig(16, 0, 8, 4, 8)), "mla"),
        (dict(arch=Arch.ENCODER_DECODER, encoder_layers=1, query_layer=True), "query_layer"),
        (dict(arch=Arch.PREFIX_LM, mla=MlaConfig(16, 0, 8, 4, 8)), "arch"),
        (dict(block=Block.PARALLEL, norm_placement=NormPlacement.POST), "norm_placement"),
        (
            dict(
                moe=MoeConfig(4, 2, 16, residual_dense=True), norm_placement=NormPlacement.SANDWICH
            ),
            "moe",
        ),
    ],
)
def test_combinations_a_sub_builder_cannot_honour_are_refused(changes, key):
    base = ModelConfig(
        name="base",
        vocab_size=256,
        hidden=32,
        layers=2,
        heads=4,
        ffn=48,
        position=Position.ROTARY,
        rotary=RotaryConfig(),
    )
    with pytest.raises(ConfigError, match=f"base: {key}"):
        build_graph(base.replace(**changes), weights=None)


def test_latent_attention_without_rotary_settings_names_the_missing_field():
    """validate() lets an MLA config leave `rotary` unset (MLA has its own rotary part), but the
    latent-attention builder needs its base and scaling: a ConfigError naming the field, not an
    AttributeError on None."""
    cfg = ModelConfig(
        name="mla-like",
        vocab_size=256,
        hidden=32,
        layers=1,
        heads=4,
        ffn=48,
        position=Position.ROTARY,
        mla=MlaConfig(16, 0, 8, 4, 8),
    )
    with pytest.raises(ConfigError, match="^mla-like: rotary: latent attention needs rotary"):
        build_graph(cfg, weights=None)
