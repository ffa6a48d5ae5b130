"""HF checkpoints -> import-hf -> ONNX: greedy tokens equal transformers.generate, genai too."""

from __future__ import annotations

import json

import numpy as np
import pytest

from irgraph.codegen.onnx import compile_graph
from irgraph.model_zoo import hf_import
from irgraph.runtimes.onnx import ORTSession
from tests.helpers.hf_tiny import make_model, save_model

PROMPTS = [[5, 17, 99, 3, 42, 7], [11, 200, 31]]
NEW = 8


def _hf_greedy(model, prompt: list[int], encoder_decoder: bool, start: int) -> list[int]:
    import torch

    model.generation_config.decoder_start_token_id = start if encoder_decoder else None
    model.generation_config.eos_token_id = None  # run all NEW steps, as ours does without stop ids
    model.generation_config.pad_token_id = 0
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=NEW, do_sample=False, num_beams=1)
    return out[0, 1:].tolist() if encoder_decoder else out[0, len(prompt) :].tolist()


@pytest.mark.parametrize(
    "case",
    ["llama", "mixtral", "deepseek_v2", "t5"]
    + [
        pytest.param(c, marks=pytest.mark.slow)
        for c in ("mistral", "gpt_neox", "bloom", "falcon-40b", "nemotron")
    ],
)
def test_imported_model_generates_transformers_greedy_tokens(case, tmp_path):
    model = make_model(case)
    folder = save_model(model, tmp_path / "hf")
    art = compile_graph(hf_import.import_hf(folder), tmp_path / "onnx")
    session = ORTSession(art)
    ours = session.generate(PROMPTS, NEW)  # a padded (or per-length) batch
    start = int(session.meta.get("decoder_start_token_id") or 0)
    theirs = [_hf_greedy(model, p, model.config.is_encoder_decoder, start) for p in PROMPTS]
    assert ours == theirs


def test_genai_runs_an_imported_llama_like_irgraph(tmp_path):
    import onnxruntime_genai as og

    folder = save_model(make_model("llama"), tmp_path / "hf")
    art = compile_graph(hf_import.import_hf(folder), tmp_path / "onnx")
    config = json.loads((art / "genai_config.json").read_text())
    assert config["search"]["past_present_share_buffer"] is True
    prompt = PROMPTS[0]
    model = og.Model(str(art))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + NEW, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    theirs = []
    while not generator.is_done():
        generator.generate_next_token()
        theirs.append(int(generator.get_next_tokens()[0]))
    ours = ORTSession(art).generate([prompt], NEW, stop_ids=[config["model"]["eos_token_id"]])[0]
    assert theirs == ours and len(ours) >= 3
    assert np.all(np.asarray(ours) < config["model"]["vocab_size"])
