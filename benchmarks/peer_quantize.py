"""Quantize a Hugging Face checkpoint with a peer tool (run by quantization_peers.py, in the tool's
own environment: it never imports irgraph, and irgraph's venv never imports the tools).

    PYTHON peer_quantize.py TOOL METHOD BITS GROUP BASE WINDOWS.npy OUT

TOOL/METHOD: llmcompressor gptq | llmcompressor awq | autoawq awq | gptqmodel gptq. BASE is the
float checkpoint (export-hf of the reference model), WINDOWS an int64 [samples, seq] array of
token ids (the calibration windows every method gets), OUT the folder the quantized checkpoint
is saved to. Prints one JSON line: {"quantize_s": seconds of the tool's quantize call}.

Settings, chosen to match irgraph's quantize() where the tool lets them (quantization_peers.py
lists what still differs): lm_head and the embedding stay float (every tool's default);
group size GROUP; GPTQ damping 0.01 of mean(diag H), columns in act order with static groups
(llm-compressor's default actorder="static"; GPTQModel desc_act=True, static_groups=True),
symmetric; AWQ asymmetric (zero points: AutoAWQ's only form, llm-compressor's W4A16_ASYM).
Everything is computed in float32.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _llmcompressor(method: str, bits: int, group: int, base: Path, ids: np.ndarray, out: Path):
    import torch
    import transformers
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    if not torch.cuda.is_available():
        # AWQModifier pins its cached activations for faster host-to-device copies; pinning
        # needs an accelerator and raises without one (llm-compressor 0.14). On a CPU-only
        # machine nothing is copied, so pinning is skipped: the numbers are the same.
        from llmcompressor.pipelines.cache import IntermediatesCache

        IntermediatesCache.pin_memory = lambda self, *a, **k: None  # type: ignore[method-assign]
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    weights = dict(num_bits=bits, type="int", strategy="group", group_size=group)
    if method == "gptq":
        group_0 = {"targets": ["Linear"], "weights": {**weights, "symmetric": True}}
        recipe = [
            GPTQModifier(
                config_groups={"group_0": group_0},
                ignore=["lm_head"],
                dampening_frac=0.01,
                actorder="static",
            )
        ]
    else:
        group_0 = {"targets": ["Linear"], "weights": {**weights, "symmetric": False}}
        recipe = [
            AWQModifier(),
            QuantizationModifier(config_groups={"group_0": group_0}, ignore=["lm_head"]),
        ]
    data = Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist()}
    )
    t0 = time.perf_counter()
    oneshot(
        model=model,
        processor=str(base),
        dataset=data,
        recipe=recipe,
        num_calibration_samples=len(ids),
        max_seq_length=ids.shape[1],
        shuffle_calibration_samples=False,
    )
    seconds = time.perf_counter() - t0
    model.save_pretrained(out, save_compressed=True)
    return seconds


def _autoawq(method: str, bits: int, group: int, base: Path, ids: np.ndarray, out: Path):
    import torch
    from awq import AutoAWQForCausalLM

    model = AutoAWQForCausalLM.from_pretrained(str(base), torch_dtype=torch.float32)
    config = {"zero_point": True, "q_group_size": group, "w_bit": bits, "version": "GEMM"}
    t0 = time.perf_counter()
    model.quantize(
        None,
        quant_config=config,
        calib_data=ids.tolist(),
        max_calib_samples=len(ids),
        max_calib_seq_len=ids.shape[1],
    )
    seconds = time.perf_counter() - t0
    model.save_quantized(str(out))
    return seconds


def _gptqmodel(method: str, bits: int, group: int, base: Path, ids: np.ndarray, out: Path):
    import torch
    from gptqmodel import GPTQModel, QuantizeConfig

    config = QuantizeConfig(
        bits=bits, group_size=group, sym=True, desc_act=True, static_groups=True, damp_percent=0.01
    )
    # a patched copy (transformers 4.x knows no TokenizersBackend), read until the model is saved
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(base, tmp, dirs_exist_ok=True)
        cfg_path = Path(tmp) / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_path.write_text(json.dumps(cfg))
        model = GPTQModel.load(tmp, config, torch_dtype=torch.float32)
        data = [
            {
                "input_ids": torch.tensor([w]),
                "attention_mask": torch.ones(1, len(w), dtype=torch.long),
            }
            for w in ids.tolist()
        ]
        t0 = time.perf_counter()
        model.quantize(data)
        seconds = time.perf_counter() - t0
        model.save(str(out))
    for extra in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (out / extra).unlink(missing_ok=True)  # the patched copies: import-hf reads bytes anyway
    return seconds


TOOLS = {"llmcompressor": _llmcompressor, "autoawq": _autoawq, "gptqmodel": _gptqmodel}


def main() -> None:
    tool, method, bits, group, base, windows, out = sys.argv[1:8]
    ids = np.load(windows, allow_pickle=False)
    seconds = TOOLS[tool](method, int(bits), int(group), Path(base), ids, Path(out))
    print(json.dumps({"quantize_s": round(seconds, 2)}), flush=True)


if __name__ == "__main__":
    main()
