"""import-hf on quantized checkpoints made by the real tools (tests/data/quantized/).

Every folder there was written by llm-compressor (compressed-tensors), AutoAWQ (GEMM) or
GPTQModel (gptq v1) on one tiny seeded LLaMA, with `reference_logits.npy`: the producing
library's own dequantized model in transformers (tests/helpers/quant_checkpoints.py says how).
The import must keep every quantized linear in the IR's quantized form and compute those
logits (<= 1e-4), prefill and cached decode. Schemes irgraph does not map, act order it cannot
fold and malformed tensors fail with one error each, nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from irgraph.errors import ConfigError
from irgraph.lm import interpret
from irgraph.model_zoo.hf_import import import_hf, import_to_dir

DATA = Path(__file__).parent / "data" / "quantized"
IDS = np.array(json.loads((DATA / "ids.json").read_text()))
TOLERANCE = 1e-4

EXACT = {  # folder -> the IR type of its quantized linears
    "ct-w4-g32-sym": "i4<g32,sym,f32>",
    "ct-w4-g32-asym": "i4<g32,asym,f32>",
    "ct-w4-g32-actorder-weight": "i4<g32,sym,f32>",
    "ct-w8-ch-sym": "i8<ch,sym,f32>",
    "awq-gemm-w4-g32": "i4<g32,asym,f16>",
    "gptq-w4-g32-sym": "i4<g32,sym,f16>",
    "gptq-w4-g32-asym": "i4<g32,asym,f16>",
    "gptq-w8-g32-sym": "i8<g32,sym,f16>",
    "gptq-w8-g32-asym": "i8<g32,asym,f16>",
    # 3 bits straddle int32 words (one little-endian bit stream); the IR keeps them in i4
    "ct-w3-g32-asym": "i4<b3,g32,asym,f32>",
    "gptq-w3-g32-sym": "i4<b3,g32,sym,f16>",
    "gptq-w3-g32-asym": "i4<b3,g32,asym,f16>",
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_tool_made_checkpoint_imports_quantized_and_matches_the_library(name):
    graph = import_hf(DATA / name)
    q = graph.params["layers.1.mlp.down.weight"].type
    assert f"{q}".startswith(EXACT[name])
    assert graph.params["embed.weight"].type.quant is None  # the tools leave it float
    ref = np.load(DATA / name / "reference_logits.npy", allow_pickle=False)
    for decode in (False, True):
        diff = float(np.abs(interpret(graph, IDS, decode=decode) - ref).max())
        assert diff <= TOLERANCE, (name, decode, diff)


def test_import_to_dir_saves_the_quantized_graph(tmp_path):
    from irgraph.serialize import load

    out = import_to_dir(DATA / "gptq-w4-g32-asym", tmp_path / "g")
    graph = load(out)
    ref = np.load(DATA / "gptq-w4-g32-asym" / "reference_logits.npy", allow_pickle=False)
    assert float(np.abs(interpret(graph, IDS) - ref).max()) <= TOLERANCE


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA / name, tmp_path / name))


def _rewrite(folder: Path, change) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_act_order_on_the_down_projection_folds_into_gate_and_up_rows(tmp_path):
    """A hand-made edit of GPTQModel's file (an imitation, labelled as such): layer 0's
    down_proj gets an act-order g_idx; the reference is GPTQ's dequantization formula
    w[o, i] = s[g[i], o] (q[i, o] - z[g[i], o]) loaded into transformers."""
    import torch
    import transformers

    folder = _copy("gptq-w4-g32-sym", tmp_path)
    stem = "model.layers.0.mlp.down_proj"
    perm = np.random.default_rng(0).permutation(128)
    g_idx = np.empty(128, np.int32)
    g_idx[perm] = np.arange(128) // 32

    def act_order(t):
        t[f"{stem}.g_idx"] = g_idx

    _rewrite(folder, act_order)
    graph = import_hf(folder)
    assert str(graph.params["layers.0.mlp.down.weight"].type).startswith("i4<g32,sym,f16>")
    dense = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.from_pretrained(folder), dtype=torch.float32
    )
    from safetensors.numpy import load_file

    from irgraph.model_zoo.hf_import.quantized import _unpack_along

    packed = load_file(folder / "model.safetensors")
    state = dense.state_dict()
    with torch.no_grad():
        for key in list(packed):
            if key in state:
                state[key].copy_(torch.from_numpy(packed[key].astype(np.float32)))
            elif key.endswith(".qweight"):
                s = key[: -len(".qweight")]
                q = _unpack_along(packed[key], 4, 0)  # [in, out]
                z = _unpack_along(packed[s + ".qzeros"], 4, 1) + 1  # v1 zeros
                g = packed[s + ".g_idx"].astype(np.int64)
                w = packed[s + ".scales"].astype(np.float32)[g] * (q - z[g])
                state[s + ".weight"].copy_(torch.from_numpy(w.T.copy()))
        ref = dense.eval()(torch.as_tensor(IDS)).logits.numpy()
    diff = float(np.abs(interpret(graph, IDS) - ref).max())
    assert diff <= TOLERANCE, diff


def test_act_order_elsewhere_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"layers\.0\.mlp\.gate\.weight .*uses act order"):
        import_hf(DATA / "gptq-w4-g32-sym-desc-act")


def test_w8a8_is_refused_naming_the_activation_scale(tmp_path):
    with pytest.raises(ConfigError, match=r"127\.5.*127"):
        import_to_dir(DATA / "ct-w8a8", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_scheme_is_refused_by_name(tmp_path):
    folder = _copy("awq-gemm-w4-g32", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="unsupported quant_method.*'bitsandbytes'"):
        import_to_dir(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gptq_scales_that_disagree_with_group_size_are_refused(tmp_path):
    folder = _copy("gptq-w4-g32-asym", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"]["group_size"] = 64  # the file holds 4 groups of 32 per row
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"scales does not fit the weight and its group_size"):
        import_to_dir(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gptq_qzeros_of_the_wrong_shape_are_refused(tmp_path):
    folder = _copy("gptq-w4-g32-asym", tmp_path)
    stem = "model.layers.1.self_attn.o_proj"

    def cut(t):
        t[f"{stem}.qzeros"] = np.ascontiguousarray(t[f"{stem}.qzeros"][:2])

    _rewrite(folder, cut)
    with pytest.raises(ConfigError, match=rf"{stem}\.qzeros does not fit"):
        import_to_dir(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


PEER_VENVS = Path(os.environ.get("IRGRAPH_PEER_VENVS", "/work/venvs"))
TOOLS = {"llmcompressor": "peers", "autoawq": "autoawq", "gptqmodel": "gptqmodel"}


@pytest.mark.slow
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_the_tools_regenerate_the_files_and_they_still_match(tool, tmp_path):
    """Slow tier: each tool makes its folders again (tests/helpers/quant_checkpoints.py, in the
    tool's own venv under $IRGRAPH_PEER_VENVS; its docstring says how to make them) and every
    folder it makes imports and equals that library's own logits. Skipped where a venv is not
    there: the tools need environments irgraph's venv cannot hold (GPTQModel 4.2.5 needs
    transformers < 4.58)."""
    python = PEER_VENVS / TOOLS[tool] / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no {tool} environment at {python.parent.parent} (IRGRAPH_PEER_VENVS)")
    script = Path(__file__).parent / "helpers" / "quant_checkpoints.py"
    done = subprocess.run(
        [str(python), str(script), tool, str(tmp_path)],
        cwd=tmp_path,  # the tools drop log files where they run
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    made = sorted(p.name for p in tmp_path.iterdir() if (p / "config.json").is_file())
    assert made and set(made) <= set(EXACT) | {"ct-w8a8", "gptq-w4-g32-sym-desc-act"}
    ids = np.array(json.loads((tmp_path / "ids.json").read_text()))
    for name in made:
        if name not in EXACT:
            continue  # the refused schemes: their tests read the kept files
        graph = import_hf(tmp_path / name)
        ref = np.load(tmp_path / name / "reference_logits.npy", allow_pickle=False)
        diff = float(np.abs(interpret(graph, ids, decode=True) - ref).max())
        assert diff <= TOLERANCE, (name, diff)
