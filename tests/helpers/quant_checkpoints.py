"""Make the quantized Hugging Face checkpoints under tests/data/quantized/ with the real tools.

Run in separate environments holding the producing libraries (never irgraph's own venv);
OUT=tests/data/quantized:

    python3 -m venv /work/venvs/peers
    /work/venvs/peers/bin/pip install -c constraints.txt torch llmcompressor
    python3 -m venv /work/venvs/autoawq
    /work/venvs/autoawq/bin/pip install -c constraints.txt torch autoawq
    /work/venvs/peers/bin/python tests/helpers/quant_checkpoints.py llmcompressor $OUT
    /work/venvs/autoawq/bin/python tests/helpers/quant_checkpoints.py autoawq $OUT
    python3 -m venv /work/venvs/gptqmodel          # GPTQModel 4.2.5 needs transformers 4.x
    /work/venvs/gptqmodel/bin/pip install torch PyPcre setuptools wheel
    BUILD_CUDA_EXT=0 /work/venvs/gptqmodel/bin/pip install --no-build-isolation gptqmodel
    /work/venvs/gptqmodel/bin/pip install "transformers>=4.56,<4.58"
    /work/venvs/gptqmodel/bin/python tests/helpers/quant_checkpoints.py gptqmodel $OUT

A trailing list of folder names makes only those (e.g. `gptqmodel $OUT gptq-w3-g32-sym`).

Each checkpoint is one tiny seeded LLaMA (2 layers, hidden 128, GQA 4/2 heads, tied head, f32,
sizes AutoAWQ's clip search accepts) quantized on a few windows of calibration bytes, plus
`reference_logits.npy`: the producing library's own dequantized model run in transformers
(compressed-tensors decompresses on load; AutoAWQ's `dequantize_gemm`, with f32 scales, fills a
dense model; GPTQModel's own quantized model on CPU in f32) on
REFERENCE_IDS. The tests import each folder and compare the interpreter with those logits.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

CONFIG = dict(
    vocab_size=256,
    hidden_size=128,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    tie_word_embeddings=True,
)
REFERENCE_IDS = np.array(
    [list(b"def main(argv):\n    return 0\n"[:24]), list(b"import os, sys; print(1)\n"[:24])]
)
CALIBRATION = (
    b"def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n"
    b"        self.x = x\n        self.y = y\n\nimport os\nfor name in os.listdir('.'):\n"
    b"    print(name.upper())\n"
) * 4
WINDOW, SAMPLES = 64, 8

# llm-compressor recipes: name -> (weights args, input_activations args or None)
LLMCOMPRESSOR = {
    "ct-w4-g32-sym": (
        dict(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32),
        None,
    ),
    "ct-w4-g32-asym": (
        dict(num_bits=4, type="int", symmetric=False, strategy="group", group_size=32),
        None,
    ),
    "ct-w8-ch-sym": (dict(num_bits=8, type="int", symmetric=True, strategy="channel"), None),
    "ct-w3-g32-asym": (  # 3 bits: values straddle int32 words (pack_to_int32's dense stream)
        dict(num_bits=3, type="int", symmetric=False, strategy="group", group_size=32),
        None,
    ),
    "ct-w4-g32-actorder-weight": (
        dict(
            num_bits=4,
            type="int",
            symmetric=True,
            strategy="group",
            group_size=32,
            actorder="weight",
        ),
        None,
    ),
    "ct-w8a8": (
        dict(num_bits=8, type="int", symmetric=True, strategy="channel"),
        dict(num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True),
    ),
}


def tiny_model():
    import torch
    import transformers

    config = transformers.LlamaConfig(**CONFIG)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def byte_tokenizer():
    """irgraph's byte vocabulary as a transformers tokenizer (llm-compressor wants a processor)."""
    import importlib.util

    import transformers

    path = Path(__file__).resolve().parents[2] / "model_zoo" / "hf_export" / "tokenizer.py"
    spec = importlib.util.spec_from_file_location("byte_tokenizer", path)
    module = importlib.util.module_from_spec(spec)  # stdlib only: no irgraph install needed
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    from tokenizers import Tokenizer

    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(module.byte_tokenizer_json(CONFIG["vocab_size"]))
    )


def windows() -> list[list[int]]:
    step = (len(CALIBRATION) - WINDOW) // SAMPLES
    return [list(CALIBRATION[i * step : i * step + WINDOW]) for i in range(SAMPLES)]


def logits(model) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(REFERENCE_IDS)).logits.float().numpy()


def make_llmcompressor(out: Path, only: set[str]) -> None:
    import torch
    import transformers
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier

    base = out / "_fp32"
    tiny_model().save_pretrained(base)
    byte_tokenizer().save_pretrained(base)
    for name, (weights, acts) in LLMCOMPRESSOR.items():
        if only and name not in only:
            continue
        model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        group = {"targets": ["Linear"], "weights": weights}
        if acts is not None:
            group["input_activations"] = acts
        recipe = GPTQModifier(config_groups={"group_0": group}, ignore=["lm_head"])
        data = Dataset.from_dict(
            {"input_ids": windows(), "attention_mask": [[1] * WINDOW] * SAMPLES}
        )
        oneshot(
            model=model,
            processor=str(base),
            dataset=data,
            recipe=recipe,
            num_calibration_samples=SAMPLES,
            max_seq_length=WINDOW,
        )
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        model.save_pretrained(folder, save_compressed=True)
        dense = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        np.save(folder / "reference_logits.npy", logits(dense.eval()))
        print(name, "->", folder)
    shutil.rmtree(base)


def make_autoawq(out: Path, only: set[str]) -> None:
    import torch
    import transformers
    from awq import AutoAWQForCausalLM
    from awq.utils.packing_utils import dequantize_gemm

    base = out / "_fp32"
    tiny_model().save_pretrained(base)
    folder = out / "awq-gemm-w4-g32"
    shutil.rmtree(folder, ignore_errors=True)
    model = AutoAWQForCausalLM.from_pretrained(str(base))
    config = {"zero_point": True, "q_group_size": 32, "w_bit": 4, "version": "GEMM"}
    model.quantize(
        None,
        quant_config=config,
        calib_data=windows(),
        max_calib_samples=SAMPLES,
        max_calib_seq_len=WINDOW,
    )
    model.save_quantized(str(folder))
    # the library's own dequantization, loaded into a dense transformers model
    from safetensors.torch import load_file

    packed = load_file(folder / "model.safetensors")
    dense = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    state = dense.state_dict()
    with torch.no_grad():
        for key in [k for k in packed if k in state]:  # AWQ folded its scales into the norms
            state[key].copy_(packed[key].float())
        for key in [k for k in packed if k.endswith(".qweight")]:
            stem = key[: -len(".qweight")]
            # f32 scales: the library's unpacking and order, without rounding (q - z) * s to f16
            scales = packed[stem + ".scales"].float()
            w = dequantize_gemm(packed[key], packed[stem + ".qzeros"], scales, 4, 32)
            state[stem + ".weight"].copy_(w.T.float())
    np.save(folder / "reference_logits.npy", logits(dense))
    shutil.rmtree(base)
    print("awq-gemm-w4-g32 ->", folder)


# GPTQModel: name -> (bits, sym, desc_act)
GPTQMODEL = {
    "gptq-w4-g32-sym": (4, True, False),
    "gptq-w4-g32-asym": (4, False, False),
    "gptq-w8-g32-sym": (8, True, False),
    "gptq-w8-g32-asym": (8, False, False),
    "gptq-w3-g32-sym": (3, True, False),  # 32 values in 3 words (PackableQuantLinear.pack)
    "gptq-w3-g32-asym": (3, False, False),
    "gptq-w4-g32-sym-desc-act": (4, True, True),
}


def make_gptqmodel(out: Path, only: set[str]) -> None:
    """GPTQModel (4.2.5 here, with transformers 4.57: its 7.x does not build, 4.2.5 does not
    import under transformers 5); reference: GPTQModel's own quantized model on CPU, f32."""
    import json as _json

    import torch
    from gptqmodel import GPTQModel, QuantizeConfig

    base = out / "_fp32"
    tiny_model().save_pretrained(base)
    byte_tokenizer().save_pretrained(base)
    cfg_path = base / "tokenizer_config.json"  # transformers 4.x knows no TokenizersBackend
    cfg = _json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(_json.dumps(cfg))
    data = [
        {"input_ids": torch.tensor([w]), "attention_mask": torch.ones(1, len(w), dtype=torch.long)}
        for w in windows()
    ]
    for name, (bits, sym, desc_act) in GPTQMODEL.items():
        if only and name not in only:
            continue
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        config = QuantizeConfig(bits=bits, group_size=32, sym=sym, desc_act=desc_act)
        model = GPTQModel.load(str(base), config)
        model.quantize(data)
        model.save(str(folder))
        loaded = GPTQModel.load(str(folder), device="cpu", torch_dtype=torch.float32)
        np.save(folder / "reference_logits.npy", logits(loaded.model.eval()))
        for extra in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / extra).unlink(missing_ok=True)
        print(name, "->", folder)
    shutil.rmtree(base)


def main() -> None:
    tool, out, only = sys.argv[1], Path(sys.argv[2]), set(sys.argv[3:])  # only: folder names
    out.mkdir(parents=True, exist_ok=True)
    tools = {
        "llmcompressor": make_llmcompressor,
        "autoawq": make_autoawq,
        "gptqmodel": make_gptqmodel,
    }
    tools[tool](out, only)
    (out / "ids.json").write_text(json.dumps(REFERENCE_IDS.tolist()))


if __name__ == "__main__":
    main()
