"""HF import without transformers models in the loop: config translation, strictness, files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from irgraph.errors import ConfigError
from irgraph.model_zoo.config import Block, RopeScaling
from irgraph.model_zoo.hf_import import SUPPORTED, import_hf, import_to_dir
from irgraph.model_zoo.hf_import.layouts import split_qkv
from irgraph.model_zoo.hf_import.roles import role_of
from irgraph.model_zoo.hf_import.translators import translate
from irgraph.weights import save_safetensors
from tests.helpers.hf_dirs import LLAMA, llama_dir


def test_unsupported_model_type_lists_the_supported_ones():
    with pytest.raises(ConfigError) as err:
        translate({"model_type": "mamba"}, "x/config.json")
    assert (
        "mamba" in str(err.value)
        and "gpt_neox" in str(err.value)
        and "deepseek_v2" in str(err.value)
    )
    assert len(SUPPORTED) == 14


def test_unknown_config_keys_are_rejected_by_name():
    with pytest.raises(ConfigError) as err:
        translate({**LLAMA, "qk_layernorm": True, "logit_softcapping": 30.0}, "x/config.json")
    assert "logit_softcapping" in str(err.value) and "qk_layernorm" in str(err.value)
    assert "x/config.json" in str(err.value)


@pytest.mark.parametrize(
    "key, value", [("quantization_config", {"bits": 4}), ("tie_encoder_decoder", True)]
)
def test_keys_harmless_only_at_their_default_are_checked(key, value):
    with pytest.raises(ConfigError, match=key):
        translate({**LLAMA, key: value}, "config.json")


def test_model_specific_unsupported_values_name_the_key():
    opt = {
        "model_type": "opt",
        "vocab_size": 256,
        "hidden_size": 32,
        "ffn_dim": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "word_embed_proj_dim": 16,
    }
    with pytest.raises(ConfigError, match="word_embed_proj_dim"):
        translate(opt, "config.json")
    with pytest.raises(ConfigError, match="rope type"):
        translate(
            {**LLAMA, "rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "config.json"
        )
    with pytest.raises(ConfigError, match="mrope_section"):
        translate(
            {**LLAMA, "rope_parameters": {"rope_type": "default", "mrope_section": [1]}},
            "config.json",
        )


def test_transformers_4_and_5_rope_spellings_translate_alike():
    v4 = {
        **LLAMA,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    }
    v5 = {
        **LLAMA,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    }
    a, b = translate(v4, "v4").config, translate(v5, "v5").config
    assert a == b
    assert a.rotary.scaling is RopeScaling.LLAMA3 and a.rotary.base == 500000.0
    assert a.rotary.original_max_position == 8192
    assert a.eos_token_id == 2 and translate(v4, "v4").meta["eos_token_id"] == [2, 3]


def test_family_switches_land_in_the_config():
    neox = translate(
        {
            "model_type": "gpt_neox",
            "vocab_size": 256,
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "rotary_pct": 0.5,
            "rotary_emb_base": 1000,
            "use_parallel_residual": False,
        },
        "c",
    )
    assert neox.config.block is Block.SEQUENTIAL and neox.qkv_packing == "heads"
    assert neox.config.rotary.fraction == 0.5 and neox.config.rotary.base == 1000.0
    falcon = translate(
        {
            "model_type": "falcon",
            "vocab_size": 256,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_kv_heads": 2,
            "new_decoder_architecture": True,
        },
        "c",
    )
    assert falcon.qkv_packing == "kv_groups" and falcon.config.kv_heads == 2
    assert falcon.config.block is Block.PARALLEL_TWO_NORMS
    yarn = translate(
        {
            "model_type": "deepseek_v2",
            "vocab_size": 256,
            "hidden_size": 32,
            "intermediate_size": 48,
            "moe_intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "n_routed_experts": 4,
            "num_experts_per_tok": 2,
            "kv_lora_rank": 16,
            "q_lora_rank": None,
            "qk_nope_head_dim": 8,
            "qk_rope_head_dim": 4,
            "v_head_dim": 8,
            "max_position_embeddings": 160,
            "rope_scaling": {
                "type": "yarn",
                "factor": 40,
                "original_max_position_embeddings": 4,
                "mscale": 0.707,
                "mscale_all_dim": 0.707,
                "beta_fast": 32,
                "beta_slow": 1,
            },
        },
        "c",
    ).config
    assert yarn.rotary.scaling is RopeScaling.YARN and yarn.rotary.interleaved
    assert (yarn.rotary.factor, yarn.rotary.mscale_all_dim, yarn.rotary.original_max_position) == (
        40,
        0.707,
        4,
    )


def test_fused_qkv_packings_split_as_documented():
    heads, kv, hd = 4, 2, 3
    rows = np.arange((heads + 2 * kv) * hd)
    q, k, v = split_qkv("kv_groups", rows, heads, kv, hd)  # per group: [q q k v]
    assert q.tolist() == [0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17]
    assert k.tolist() == [6, 7, 8, 18, 19, 20] and v.tolist() == [9, 10, 11, 21, 22, 23]
    q, k, v = split_qkv(
        "mp4_qvk", np.arange(3 * 4 * 2), 4, 4, 2
    )  # 4 shards of [q v k], 2 rows each
    assert q.tolist() == [0, 1, 6, 7, 12, 13, 18, 19] and v.tolist() == [2, 3, 8, 9, 14, 15, 20, 21]
    with pytest.raises(ConfigError, match="rows"):
        split_qkv("heads", np.zeros(10), heads, heads, hd)


def test_role_table():
    assert role_of("model.layers.7.self_attn.q_proj.weight") == "layers.7.attn.q.weight"
    assert role_of("transformer.h.0.mlp.c_proj.bias") == "layers.0.mlp.down.bias"
    assert (
        role_of("model.layers.1.block_sparse_moe.experts.3.w2.weight")
        == "layers.1.moe.experts.3.down.weight"
    )
    assert (
        role_of("decoder.block.0.layer.1.EncDecAttention.k.weight")
        == "layers.0.cross_attn.k.weight"
    )
    assert (
        role_of("encoder.block.2.layer.1.DenseReluDense.wi_0.weight")
        == "encoder.layers.2.mlp.gate.weight"
    )
    assert role_of("model.layers.0.self_attn.rotary_emb.inv_freq") is None
    with pytest.raises(ConfigError, match="visual_proj"):
        role_of("model.visual_proj.weight")


def test_unknown_checkpoint_tensor_is_an_error(tmp_path):
    folder = llama_dir(tmp_path, **{"model.layers.0.self_attn.q_norm.weight": (8,)})
    with pytest.raises(ConfigError, match="q_norm"):
        import_hf(folder)


def test_pickled_checkpoints_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ConfigError, match="pickled"):
        import_hf(tmp_path)


def test_saved_folder_carries_tokenizer_and_token_ids(tmp_path):
    folder = llama_dir(tmp_path)
    from tokenizers import Tokenizer, models

    tokenizer = Tokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a")).to_str()
    (folder / "tokenizer.json").write_text(tokenizer)
    out = import_to_dir(folder, tmp_path / "graph")
    assert (out / "tokenizer.json").read_text() == tokenizer
    from irgraph.serialize import load

    graph = load(out)
    assert graph.meta["bos_token_id"] == 1 and graph.meta["eos_token_id"] == 2
    assert graph.meta["eos_token_ids"] == [2, 3] and graph.meta["model"] == "llama"


def test_cli_import_then_run_shows_the_interpreter_numbers(tmp_path):
    from irgraph.cli import main
    from irgraph.lm import interpret

    folder = llama_dir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["import-hf", str(folder), "-o", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    assert "imported llama" in result.output
    result = runner.invoke(main, ["run", str(tmp_path / "g"), "--ids", "5,6,7", "--json"])
    assert result.exit_code == 0, result.output
    logits = np.asarray(json.loads(result.output)["logits"])
    expected = interpret(import_hf(folder), [[5, 6, 7]])[0]
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-6)
    (tmp_path / "empty").mkdir()
    bad = runner.invoke(main, ["import-hf", str(tmp_path / "empty"), "-o", str(tmp_path / "g2")])
    assert bad.exit_code == 1 and "config.json" in bad.output


def test_saving_fetches_each_mapped_tensor_once_while_writing(tmp_path):
    from irgraph.model_zoo.hf_import.weights import MappedWeights, Source
    from irgraph.weights import WeightStore

    fetched: list[str] = []

    def source(name, shape):
        def load():
            fetched.append(name)
            return np.full(shape, len(fetched), dtype=np.float32)

        return Source(shape, np.dtype(np.float32), load, name)

    store = MappedWeights(
        {"a": source("a", (2, 3)), "b": source("b", (4,)), "c": source("c", (1,))}
    )
    save_safetensors(store, tmp_path / "w.safetensors", names=["b", "a"])
    assert fetched == ["b", "a"]  # header from shapes alone, then one fetch per tensor, in order
    back = WeightStore.open(tmp_path / "w.safetensors")
    assert sorted(back) == ["a", "b"] and back["a"].tolist() == [[2.0] * 3] * 2
    bad = MappedWeights(
        {"a": Source((3,), np.dtype(np.float32), lambda: np.zeros(2, np.float32), "a")}
    )
    with pytest.raises(ConfigError, match="declared shape"):
        save_safetensors(bad, tmp_path / "bad.safetensors")


def test_keys_left_at_transformers_defaults_may_be_omitted():
    """A config.json of only non-default keys (to_diff_dict) is the same model as the full one."""
    import transformers

    from tests.helpers.hf_tiny import CASES

    for case, (cls, kwargs) in sorted(CASES.items()):
        hf = getattr(transformers, cls)(**kwargs)
        full, sparse = (
            translate(hf.to_dict(), "full").config,
            translate(hf.to_diff_dict(), "sparse").config,
        )
        assert full == sparse, case
