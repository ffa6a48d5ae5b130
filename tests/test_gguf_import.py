"""`import-gguf`: GGUF files back into the IR, without llama.cpp (gguf-py only).

irgraph's GGUF writer -> importer gives the graph it started from, text and weights, for f32
and for q4_0 / q8_0 graphs; every block type with an exact IR form dequantizes (IR) to what
gguf-py's dequantization gives, bit for bit; the others are refused by name, or dequantized
with --dequantize and listed; a byte-level BPE tokenizer comes back as tokenizer.json that
encodes as the original; unmapped architectures and unknown keys are refused by name.
(tests/test_bad_inputs.py holds the malformed files; tests/test_gguf_import_llama.py the
llama.cpp side.)"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from irgraph import lm, model_zoo
from irgraph.cli import main
from irgraph.errors import ConfigError
from irgraph.model_zoo.builder import build_graph
from irgraph.passes import run_pipeline
from tests.helpers.gguf_files import assert_dequantization_matches, random_blocks, rewrite

gguf = pytest.importorskip("gguf")
from irgraph.codegen.gguf import compile_graph  # noqa: E402  (needs gguf)
from irgraph.model_zoo.gguf_import import import_gguf, import_to_dir  # noqa: E402
from irgraph.model_zoo.gguf_import.tokenizer import vocabulary  # noqa: E402

DOWN = "blk.0.ffn_down.weight"


def _write(graph, folder, **kw):
    return compile_graph(graph, folder, **kw) / "model.gguf"


def _same_weights(a, b):
    for name in a.params:
        ours, theirs = a.stored(name), b.stored(name)
        assert ours.keys() == theirs.keys(), name
        for suffix, array in ours.items():
            other = np.asarray(theirs[suffix])
            assert np.asarray(array).dtype == other.dtype, (name, suffix)
            assert np.asarray(array).tobytes() == other.tobytes(), (name, suffix)


@pytest.mark.parametrize(
    "case, pipeline",
    [
        ("llama-2", None),  # GQA (2 KV heads for 4), separate head
        ("llama-tied", None),
        ("mixtral", None),  # experts: one [experts, ffn, hidden] stack per layer
        ("llama-2", "quantize(method=rtn,bits=4,group=32)"),  # q4_0 (head q8_0)
        ("llama-2", "quantize(method=rtn,bits=8,group=32)"),  # q8_0
    ],
)
def test_writer_then_importer_is_the_same_graph(case, pipeline, tmp_path):
    if case == "llama-tied":
        cfg = model_zoo.config("llama-2", "tiny").replace(tied_embeddings=True)
        graph = build_graph(cfg, weights="random")
    else:
        graph = model_zoo.build(case, size="tiny", seed=0)
    if pipeline:
        graph = run_pipeline(graph, pipeline).graph
    path = _write(graph, tmp_path / "a")
    imported = import_gguf(path)
    assert str(imported.graph) == str(graph)
    _same_weights(graph, imported.graph)
    assert imported.dequantized == {}
    assert imported.vocabulary.json is None and "byte vocabulary" in imported.vocabulary.note
    assert assert_dequantization_matches(path, imported.graph) == len(graph.params)


def test_f16_matrices_come_back_f16(tmp_path):
    graph = model_zoo.build("llama-2", size="tiny", seed=0)
    imported = import_gguf(_write(graph, tmp_path / "a", dtype="f16")).graph
    assert str(imported.params["layers.0.mlp.up.weight"].type) == "f16[128, 64]"
    assert str(imported.params["layers.0.attn_norm.weight"].type) == "f32[64]"
    w = graph.weight("layers.0.attn.q.weight").astype(np.float16)
    assert imported.weight("layers.0.attn.q.weight").tobytes() == w.tobytes()
    ids = np.array([[5, 9, 200, 3]])
    assert np.abs(lm.interpret(imported, ids) - lm.interpret(graph, ids)).max() < 1e-2


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """The tiny LLaMA with a 256-wide MLP: ffn_down rows are whole k-quant super-blocks."""
    graph = build_graph(model_zoo.config("llama-2", "tiny").replace(ffn=256), weights="random")
    return _write(graph, tmp_path_factory.mktemp("wide") / "a")


@pytest.mark.parametrize(
    "ggml, ir",
    [
        ("Q8_0", "i8<g32,sym,f16>"),
        ("Q4_0", "i4<g32,sym,f16>"),
        ("Q5_0", "i8<g32,sym,f16>"),
        ("Q6_K", "i8<g16,sym,f32>"),
    ],
)
def test_exact_block_types_dequantize_as_gguf_does(wide, ggml, ir, tmp_path):
    """Random blocks (every bit pattern gguf reads): the IR's weight is gguf's, bit for bit."""
    path = rewrite(wide, tmp_path / "b.gguf", tensors={DOWN: (random_blocks(ggml, 64, 256), ggml)})
    graph = import_gguf(path).graph
    assert str(graph.params["layers.0.mlp.down.weight"].type) == f"{ir}[64, 256]"
    assert_dequantization_matches(path, graph)


def test_q4_1_is_exact_only_with_integer_zero_points(wide, tmp_path):
    """irgraph writes q4_1 with m = -(z + 8)·d (exact); gguf's quantizer stores the block
    minimum, which no integer zero point reproduces: refused, or dequantized on request."""
    rng = np.random.default_rng(0)
    d = np.full((64, 8, 1), 0.0625, np.float16)  # 8 blocks of 32 per row
    m = (-(rng.integers(-8, 8, (64, 8, 1)) + 8) * d.astype(np.float32)).astype(np.float16)
    q = rng.integers(0, 16, (64, 8, 32)).astype(np.uint8)
    packed = q[..., :16] | (q[..., 16:] << 4)  # GGML: values 0..15 low nibbles, 16..31 high
    raw = np.concatenate([d.view(np.uint8), m.view(np.uint8), packed], axis=-1).reshape(64, -1)
    exact = rewrite(wide, tmp_path / "exact.gguf", tensors={DOWN: (raw, "Q4_1")})
    graph = import_gguf(exact).graph
    assert str(graph.params["layers.0.mlp.down.weight"].type) == "i4<g32,asym,f16>[64, 256]"
    assert_dequantization_matches(exact, graph)

    w = rng.standard_normal((64, 256)).astype(np.float32)
    minimum = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q4_1)
    path = rewrite(wide, tmp_path / "min.gguf", tensors={DOWN: (minimum, "Q4_1")})
    with pytest.raises(ConfigError, match="Q4_1 whose minimum is no integer zero point"):
        import_gguf(path)
    imported = import_gguf(path, dequantize=True)
    assert list(imported.dequantized) == [DOWN]
    assert_dequantization_matches(path, imported.graph)


@pytest.mark.parametrize("ggml", ["Q4_K", "Q5_K"])
def test_k_quants_are_refused_by_name_or_dequantized(wide, ggml, tmp_path):
    path = rewrite(wide, tmp_path / "b.gguf", tensors={DOWN: (random_blocks(ggml, 64, 256), ggml)})
    with pytest.raises(ConfigError, match=rf"{DOWN} \({ggml} has no exact IR form\).*"):
        import_gguf(path)
    imported = import_gguf(path, dequantize=True)
    assert imported.dequantized == {DOWN: f"{ggml} has no exact IR form"}
    assert str(imported.graph.params["layers.0.mlp.down.weight"].type) == "f32[64, 256]"
    assert_dequantization_matches(path, imported.graph)
    half = import_gguf(path, dequantize=True, dtype="f16").graph
    want = gguf.quants.dequantize(
        random_blocks(ggml, 64, 256), getattr(gguf.GGMLQuantizationType, ggml)
    )
    assert half.weight("layers.0.mlp.down.weight").tobytes() == want.astype(np.float16).tobytes()


def test_cli_refuses_without_dequantize_and_lists_what_it_dequantizes(wide, tmp_path):
    path = rewrite(
        wide, tmp_path / "b.gguf", tensors={DOWN: (random_blocks("Q4_K", 64, 256), "Q4_K")}
    )
    out = tmp_path / "out"
    refused = CliRunner().invoke(main, ["import-gguf", str(path), "-o", str(out)])
    assert refused.exit_code == 1 and refused.output.startswith("Error: ")
    assert "--dequantize" in refused.output and "Traceback" not in refused.output
    assert not out.exists()
    done = CliRunner().invoke(main, ["import-gguf", str(path), "-o", str(out), "--dequantize"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == f"dequantized {DOWN} to f32: Q4_K has no exact IR form"
    assert "byte vocabulary" in lines[1] and lines[2].startswith("imported llama-2-tiny (")
    from irgraph.serialize import load

    saved, ids = load(out), np.array([[1, 7, 42, 3]])
    ref = lm.interpret(import_gguf(path, dequantize=True).graph, ids)
    assert np.array_equal(lm.interpret(saved, ids), ref)


def test_byte_level_bpe_tokenizer_comes_back(tmp_path):
    from tokenizers import Tokenizer

    from tests.test_gguf_codegen import byte_level_bpe

    graph = build_graph(
        model_zoo.config("llama-2", "tiny").replace(vocab_size=320), weights="random"
    )
    original = byte_level_bpe(tmp_path)
    folder = compile_graph(
        graph, tmp_path / "a", extra_files={"tokenizer.json": tmp_path / "tokenizer.json"}
    )
    out, imported = import_to_dir(folder / "model.gguf", tmp_path / "b")
    assert "byte-level BPE rebuilt" in imported.vocabulary.note
    rebuilt = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert rebuilt.get_vocab_size() == original.get_vocab_size()  # no [PAD] placeholders
    for text in ["the quick brown fox", "12 + 345 = 357.\n", "héllo wörld ✓", "  lazy  dogs"]:
        ids = original.encode(text).ids
        assert rebuilt.encode(text).ids == ids, text
        assert rebuilt.decode(ids) == original.decode(ids)


def test_add_bos_token_prepends_bos():
    from tokenizers import Tokenizer

    tokens = ["<s>", *(chr(c) for c in range(ord("a"), ord("z") + 1)), "ab"]
    meta = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [3] + [1] * (len(tokens) - 1),
        "tokenizer.ggml.merges": ["a b"],
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
    }
    tok = Tokenizer.from_str(vocabulary(meta).json)
    assert tok.encode("abc").ids == [0, 27, 3]
    meta["tokenizer.ggml.add_bos_token"] = False
    assert Tokenizer.from_str(vocabulary(meta).json).encode("abc").ids == [27, 3]


def test_a_vocabulary_that_cannot_be_rebuilt_is_said_so():
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>", "▁the"],
        "tokenizer.ggml.token_type": [2, 3, 3, 1],
    }
    v = vocabulary(meta)
    assert v.json is None and v.note.startswith("tokenizer NOT carried: a 'llama' vocabulary")


def test_unmapped_architectures_and_unknown_keys_are_refused_by_name(tmp_path):
    llama = _write(model_zoo.build("llama-2", size="tiny", seed=0), tmp_path / "llama")
    mamba = rewrite(llama, tmp_path / "m.gguf", arch="mamba")
    with pytest.raises(ConfigError, match="architecture 'mamba' is not imported.*llama"):
        import_gguf(mamba)
    window = {"llama.attention.sliding_window": (64, gguf.GGUFValueType.UINT32)}
    with pytest.raises(ConfigError, match="does not understand.*llama.attention.sliding_window"):
        import_gguf(rewrite(llama, tmp_path / "w.gguf", meta=window))
    yarn = {"llama.rope.scaling.type": ("yarn", gguf.GGUFValueType.STRING)}
    with pytest.raises(ConfigError, match="rope scaling 'yarn' is not imported"):
        import_gguf(rewrite(llama, tmp_path / "y.gguf", meta=yarn))
