"""`--target gguf`: the written file read back with gguf-py's GGUFReader (keys, names, shapes,
types), llama.cpp's rotary row order against the interpreter's rotary, q4_0 / q8_0 blocks
dequantized by gguf equal to the IR's weights bit for bit, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from irgraph import model_zoo
from irgraph.codegen.gguf import compile_graph
from irgraph.codegen.gguf.tensors import rope_order
from irgraph.dtypes import DType
from irgraph.errors import CodegenError, ConfigError
from irgraph.passes import run_pipeline
from irgraph.registry import get_op

gguf = pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def llama():
    return model_zoo.build("llama-2", size="tiny", seed=0)


def _reader(folder):
    return gguf.GGUFReader(str(folder / "model.gguf"))


def _field(reader, key):
    field = reader.fields[key]
    value = field.parts[field.data[0]]
    if field.types[0] == gguf.GGUFValueType.STRING:
        return bytes(value).decode()
    return value.tolist()[0]


def _tensors(reader):
    return {t.name: t for t in reader.tensors}


def test_llama_f32_keys_names_shapes(llama, tmp_path):
    out = compile_graph(llama, tmp_path / "a")
    r = _reader(out)
    q = llama.params["layers.0.attn.q.weight"].type.shape
    k = llama.params["layers.0.attn.k.weight"].type.shape
    hidden = int(llama.params["embed.weight"].type.shape[1])
    assert _field(r, "general.architecture") == "llama"
    assert _field(r, "llama.embedding_length") == hidden
    assert _field(r, "llama.block_count") == sum(
        n.startswith("layers.") and n.endswith(".attn_norm.weight") for n in llama.params
    )
    heads = _field(r, "llama.attention.head_count")
    kv_heads = _field(r, "llama.attention.head_count_kv")
    assert heads * (int(q[0]) // heads) == int(q[0]) and kv_heads == int(k[0]) // (
        int(q[0]) // heads
    )
    assert _field(r, "tokenizer.ggml.model") == "llama"
    tensors = _tensors(r)
    assert len(tensors) == len(llama.params)
    t = tensors["blk.0.attn_q.weight"]
    assert t.tensor_type == gguf.GGMLQuantizationType.F32
    assert list(t.shape) == [int(q[1]), int(q[0])]  # ggml order: ne0 = input features
    assert tensors["token_embd.weight"].data.shape == tuple(llama.params["embed.weight"].type.shape)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "gguf" and manifest["gguf"]["architecture"] == "llama"
    assert set(manifest["files"]) == {"model.gguf", "graph.irg"}


def test_llama_rows_are_permuted_for_interleaved_rope(llama, tmp_path):
    """q and k rows follow llama.cpp's pair order; rotating them with interleaved pairs is the
    IR's rotate-half rotation, permuted (v and o untouched)."""
    r = _tensors(_reader(compile_graph(llama, tmp_path / "a")))
    q = llama.weight("layers.0.attn.q.weight")
    heads = _field(_reader(tmp_path / "a"), "llama.attention.head_count")
    hd = q.shape[0] // heads
    order = rope_order(hd, hd, to_interleaved=True)
    rows = (np.arange(heads)[:, None] * hd + order).reshape(-1)
    np.testing.assert_array_equal(r["blk.0.attn_q.weight"].data, q[rows])
    np.testing.assert_array_equal(
        r["blk.0.attn_v.weight"].data, llama.weight("layers.0.attn.v.weight")
    )
    x = np.random.default_rng(0).standard_normal((1, 3, heads, hd)).astype(np.float32)
    pos = np.arange(3)[None]
    rotary = get_op("rotary")
    ir = rotary.ref(x, pos, **{**_rotary_attrs(llama), "interleaved": False})[0]
    cpp = rotary.ref(x[..., order], pos, **{**_rotary_attrs(llama), "interleaved": True})[0]
    np.testing.assert_allclose(cpp, ir[..., order], rtol=1e-6, atol=1e-6)


def _rotary_attrs(graph):
    node = next(n for n in graph.nodes if n.op == "rotary")
    return dict(node.attrs)


def test_f16_matrices_f32_norms(llama, tmp_path):
    tensors = _tensors(_reader(compile_graph(llama, tmp_path / "a", dtype="f16")))
    assert tensors["blk.0.ffn_gate.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    np.testing.assert_array_equal(
        tensors["blk.0.ffn_down.weight"].data,
        llama.weight("layers.0.mlp.down.weight").astype(np.float16),
    )


@pytest.mark.parametrize(
    "bits, sym, ggml",
    [(4, "true", "Q4_0"), (8, "true", "Q8_0"), (3, "true", "Q4_0")],
)
def test_quantized_blocks_dequantize_to_the_ir_weight_bit_for_bit(llama, tmp_path, bits, sym, ggml):
    pipeline = f"quantize(method=rtn,bits={bits},group=32,sym={sym})"
    graph = run_pipeline(llama, pipeline).graph
    tensors = _tensors(_reader(compile_graph(graph, tmp_path / "a")))
    name = "layers.0.mlp.down.weight"
    assert graph.params[name].type.quant is not None
    t = tensors["blk.0.ffn_down.weight"]
    assert t.tensor_type == getattr(gguf.GGMLQuantizationType, ggml)
    dequantized = gguf.quants.dequantize(t.data, t.tensor_type)
    assert dequantized.tobytes() == graph.weight(name).astype(np.float32).tobytes()


def test_other_quantized_forms_are_refused_without_requantize(llama, tmp_path):
    graph = run_pipeline(llama, "quantize(method=rtn,bits=4,group=0)").graph
    with pytest.raises(CodegenError, match="no GGML equivalent.*--requantize"):
        compile_graph(graph, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    tensors = _tensors(_reader(compile_graph(graph, tmp_path / "b", requantize="q8_0")))
    t = tensors["blk.0.attn_k.weight"]
    assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32


def test_unknown_ggml_type_and_dtype_are_refused(llama, tmp_path):
    with pytest.raises(ConfigError, match="unknown GGML type.*q8_0"):
        compile_graph(llama, tmp_path / "a", requantize="q3_x")
    with pytest.raises(ConfigError, match="unknown GGUF dtype"):
        compile_graph(llama, tmp_path / "a", dtype="f8")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    "name, arch",
    [
        ("mixtral", "llama"),
        ("gpt-neox-20b", "gptneox"),
        ("bloom", "bloom"),
        ("starcoder", "starcoder"),
        ("hyperclova", "gpt2"),
    ],
)
def test_architecture_follows_structure(name, arch, tmp_path):
    graph = model_zoo.build(name, size="tiny", seed=0)
    r = _reader(compile_graph(graph, tmp_path / "a"))
    assert _field(r, "general.architecture") == arch
    tensors = _tensors(r)
    if arch == "llama":  # experts: one [experts, ffn, hidden] stack per layer
        up = graph.weight("layers.0.moe.experts.up")
        np.testing.assert_array_equal(tensors["blk.0.ffn_up_exps.weight"].data, up)
        assert _field(r, "llama.expert_used_count") == 2
        return
    # q, k, v rows stacked in one tensor; NEOX rope and ALiBi need no row permutation
    qkv = np.concatenate([graph.weight(f"layers.0.attn.{x}.weight") for x in "qkv"])
    np.testing.assert_array_equal(tensors["blk.0.attn_qkv.weight"].data, qkv)
    assert "blk.0.attn_qkv.bias" in tensors and "output_norm.bias" in tensors


def test_a_structure_no_builder_computes_is_refused_by_name(tmp_path):
    graph = model_zoo.build("palm", size="tiny", seed=0)
    with pytest.raises(CodegenError) as info:
        compile_graph(graph, tmp_path / "a")
    message = str(info.value)
    assert "no llama.cpp architecture computes this graph" in message
    assert "llama: scaled logits, layer norm (the builder uses RMSNorm), parallel block" in message
    assert "falcon:" in message and "bloom:" in message
    assert not (tmp_path / "a").exists()


def byte_level_bpe(folder, vocab_size=300):
    """A GPT-2-style tokenizer.json (ByteLevel pre-tokenizer and decoder) trained on a text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = folder / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog; 12 + 345 = 357.\n" * 50)
    tok.train(
        [str(text)],
        trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok.save(str(folder / "tokenizer.json"))
    return tok


def test_a_byte_level_bpe_tokenizer_becomes_gpt2_keys(tmp_path):
    from irgraph.model_zoo.builder import build_graph

    llama = build_graph(
        model_zoo.config("llama-2", "tiny").replace(vocab_size=320), weights="random"
    )
    tok = byte_level_bpe(tmp_path)
    out = compile_graph(
        llama, tmp_path / "a", extra_files={"tokenizer.json": tmp_path / "tokenizer.json"}
    )
    r = _reader(out)
    assert _field(r, "tokenizer.ggml.model") == "gpt2"
    assert _field(r, "tokenizer.ggml.pre") == "gpt-2"
    field = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(field.parts[i]).decode() for i in field.data]
    vocab = int(llama.params["embed.weight"].type.shape[0])
    assert len(tokens) == vocab
    assert tokens[: tok.get_vocab_size()] == [
        tok.id_to_token(i) for i in range(tok.get_vocab_size())
    ]
    assert len(r.fields["tokenizer.ggml.merges"].data) > 0
    assert "tokenizer.json" in json.loads((out / "manifest.json").read_text())["files"]


def deepseek_v2_ungrouped():
    """The DeepSeek-v2 twin routing over all experts at once (llama.cpp's grouped rule differs)."""
    import dataclasses

    from irgraph.model_zoo.builder import build_graph

    cfg = model_zoo.config("deepseek-v2", "tiny")
    cfg = cfg.replace(moe=dataclasses.replace(cfg.moe, n_group=1, topk_group=1))
    return build_graph(cfg, weights="random")


def test_deepseek_v2_latent_attention_and_its_grouped_routing(tmp_path):
    with pytest.raises(CodegenError, match=r"deepseek2: group-limited routing over \d+ groups"):
        compile_graph(model_zoo.build("deepseek-v2", size="tiny", seed=0), tmp_path / "a")
    graph = deepseek_v2_ungrouped()
    r = _reader(compile_graph(graph, tmp_path / "b"))
    assert _field(r, "general.architecture") == "deepseek2"
    assert _field(r, "deepseek2.leading_dense_block_count") == 1
    assert _field(r, "deepseek2.attention.kv_lora_rank") == 32
    assert _field(r, "deepseek2.rope.scaling.type") == "yarn"
    tensors = _tensors(r)
    np.testing.assert_array_equal(  # interleaved rope already: no row permutation
        tensors["blk.1.attn_q_b.weight"].data, graph.weight("layers.1.attn.q_b.weight")
    )
    assert "blk.0.ffn_gate.weight" in tensors and "blk.1.ffn_up_shexp.weight" in tensors


def test_k_quants_need_llama_cpp(llama, tmp_path):
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        with pytest.raises(
            ConfigError, match="q4_k_m runs llama.cpp's quantizer.*irgraph\\[llama\\]"
        ):
            compile_graph(llama, tmp_path / "a", requantize="q4_k_m")
        assert not (tmp_path / "a").exists()
    else:
        pytest.skip("llama-cpp-python is installed (tests/test_gguf_llama.py runs k-quants)")


def test_rows_that_are_not_whole_blocks_fall_back_and_say_so(tmp_path):
    from irgraph.model_zoo.builder import build_graph

    graph = build_graph(model_zoo.config("llama-2", "tiny").replace(ffn=48), weights="random")
    out = compile_graph(graph, tmp_path / "a", requantize="q8_0")
    tensors = _tensors(_reader(out))
    assert tensors["blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["blk.0.ffn_up.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "blk.0.ffn_down.weight" in manifest["gguf"]["fallbacks"]
    assert any(n.startswith("blk.0.ffn_down.weight kept as 48 columns") for n in manifest["notes"])


def test_asymmetric_4_bit_becomes_q4_1_only_where_its_min_is_exact_in_f16():
    """q4_1 stores m = -(z + 8)·d in f16: exact for zero points with z + 8 a power of two (or 0)
    here, so gguf's d·n + m is the IR's (q - z)·d bit for bit; RTN's zero points mostly are not."""
    from irgraph.codegen.gguf.tensors import _repack
    from irgraph.quant import QuantSpec, dequantize, pack

    spec = QuantSpec.parse(DType.i4, ["g32", "asym", "f16"])
    rng = np.random.default_rng(0)
    q = rng.integers(-8, 8, (6, 64)).astype(np.int8)
    scales = (rng.random((6, 2)) * 0.1 + 0.01).astype(np.float16)
    zeros = (rng.choice([0, 1, 2, 4, 8], (6, 2)) - 8).astype(np.int8)
    stored = {"": pack(q, spec), ".scales": scales, ".zero_points": zeros}
    t = _repack(spec, stored, (6, 64))
    assert t is not None and t.ggml == "Q4_1"
    got = gguf.quants.dequantize(t.array, gguf.GGMLQuantizationType.Q4_1)
    assert got.tobytes() == dequantize(spec, (6, 64), stored).astype(np.float32).tobytes()
    stored[".zero_points"] = np.full((6, 2), -5, np.int8)  # z + 8 = 3: -3·d needs 13 bits
    stored[".scales"] = np.full((6, 2), 0.0999, np.float16)
    assert _repack(spec, stored, (6, 64)) is None


def test_gpt3_alternating_banded_layers_are_refused(tmp_path):
    """GPT-3's twin alternates dense and banded layers; llama.cpp's gpt2 builder has one kind
    (HyperCLOVA, dense GPT-3 form, is the gpt2 row's twin above)."""
    with pytest.raises(CodegenError, match="layers differ in attention window .*GPT-3"):
        compile_graph(model_zoo.build("gpt-3", size="tiny", seed=0), tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_falcon_with_partial_rotary_is_refused(tmp_path):
    """llama.cpp's loader refuses a Falcon file whose n_rot is not the head width."""
    from irgraph.model_zoo.builder import build_graph
    from irgraph.model_zoo.config import Block

    cfg = model_zoo.config("gpt-neox-20b", "tiny").replace(
        block=Block.PARALLEL, qkv_bias=False, out_bias=False, mlp_bias=False
    )
    with pytest.raises(CodegenError, match=r"falcon: partial rotary \(4 of 16\)"):
        compile_graph(build_graph(cfg, weights="random"), tmp_path / "a")
    assert not (tmp_path / "a").exists()
