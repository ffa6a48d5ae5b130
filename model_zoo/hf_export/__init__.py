"""Hugging Face export: an irgraph graph -> config.json + model.safetensors + tokenizer.

    exported = export_hf(graph, graph_dir)         # .config, .tensors, .tokenizer (in memory)
    export_to_dir("runs/model", "hub/model")        # `irgraph export-hf`: the folder, atomically

The inverse of `hf_import` for the LLaMA form (llama, mistral, mixtral; GQA; tied or separate
head; Mixtral's experts): `llama.config_json` reads the config off the graph, every parameter
goes out under its checkpoint name in its stored dtype (f32 / f16 / bf16), and then `check`
proves the pair right before anything is written: the config is run through the importer's
own translator and builder, and the graph that import would make must print as the given
graph does (name and meta lines aside). A graph of another family, or one a pass changed
(fused projections, parallel blocks, a W8A8 linear), fails that check with the first line
that differs: refused by name, nothing written.

Quantized parameters have no float checkpoint form: they are refused, naming them, unless
`dequantize`, which writes the IR's dequantization (`irgraph.quant.dequantize`, f32) and
lists them; the re-import is then the float graph of the same function.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.model_zoo.hf_export.llama import config_json, expert_names, hf_name
from irgraph.model_zoo.hf_export.tokenizer import TokenizerFiles, tokenizer_files
from irgraph.model_zoo.hf_import.retype import retype_params as retype_float
from irgraph.model_zoo.hf_import.translators import translate
from irgraph.model_zoo.hf_import.weights import MappedWeights, Source
from irgraph.progress import Progress, no_progress
from irgraph.quant import ACT_NONE, stored_names
from irgraph.quant import dequantize as dequantize_arrays
from irgraph.retype import retype_params
from irgraph.types import TensorType
from irgraph.weights import WeightStore, save_safetensors

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
GENERATION_FILE = "generation_config.json"
# the export's provenance; its presence makes the folder an irgraph output (irgraph.output)
PROVENANCE_FILE = "irgraph_export.json"


@dataclass
class Exported:
    config: dict[str, Any]
    tensors: dict[str, Source]  # checkpoint name -> how to produce it
    tokenizer: TokenizerFiles
    dequantized: list[str] = field(default_factory=list)  # IR params written dequantized


def _float_view(graph: Graph, dequantize: bool) -> tuple[Graph, list[str]]:
    """`graph` with its quantized params declared f32 (their dequantization), if allowed."""
    w8a8 = [n for n in graph.nodes if n.op == "linear" and n.attrs.get("act_quant") != ACT_NONE]
    if w8a8:
        weight = w8a8[0].inputs[1]
        raise ConfigError(
            f"graph {graph.name!r} has W8A8 linears (activations quantized per token at run "
            "time), which a float checkpoint cannot express; export the graph before quantize",
            got=f'{len(w8a8)} linear(s) with act_quant="{w8a8[0].attrs["act_quant"]}", first '
            f"@{weight.param if weight is not None else '?'}",
        )
    quantized = sorted(n for n, v in graph.params.items() if v.type.quant is not None)
    if not quantized:
        return graph, []
    if not dequantize:
        shown = ", ".join(f"{n}: {graph.params[n].type}" for n in quantized[:3])
        raise ConfigError(
            f"graph {graph.name!r} has quantized weights, which a float checkpoint cannot hold; "
            "pass --dequantize to write their f32 dequantization",
            got=shown + (f", ... ({len(quantized)} in all)" if len(quantized) > 3 else ""),
        )
    types = {n: TensorType(DType.f32, graph.params[n].type.shape) for n in quantized}
    store = graph.weights
    assert store is not None  # checked by the caller

    def loader(name: str) -> Any:
        spec = graph.params[name].type.quant
        shape = tuple(int(d) for d in graph.params[name].type.shape)  # type: ignore[arg-type]
        suffixes = [s[len(name) :] for s in stored_names(name, spec)]
        return lambda: dequantize_arrays(spec, shape, {s: store[name + s] for s in suffixes})  # type: ignore[arg-type]

    view = retype_params(graph, types)
    sources = {
        n: Source(
            tuple(int(d) for d in v.type.shape),  # type: ignore[arg-type]
            np.dtype(np.float32),
            loader(n) if n in types else partial(store.__getitem__, n),
            n,
        )
        for n, v in graph.params.items()
    }
    view.weights = MappedWeights(sources)
    return view, quantized


def _expert(store: WeightStore, name: str, e: int) -> np.ndarray:
    return np.asarray(store[name][e])


def _body(graph: Graph) -> list[str]:
    """The printed graph without its name and meta lines (the checkpoint keeps neither)."""
    lines = str(graph).splitlines()[1:]
    return [line for line in lines if not line.lstrip().startswith("meta ")]


def check(graph: Graph, config: dict[str, Any]) -> None:
    """ConfigError unless importing `config` builds `graph` (text equal, name and meta aside)."""
    from irgraph.model_zoo.builder import build_graph

    try:
        plan = translate(json.loads(json.dumps(config)), "the exported config.json")
    except ConfigError as e:
        raise ConfigError(
            f"graph {graph.name!r} has no LLaMA-form config.json: {e.message}",
            expected=e.expected,
            got=e.got,
        ) from None
    rebuilt = build_graph(plan.config, weights=None)
    rebuilt = retype_float(rebuilt, {n: v.type.dtype for n, v in graph.params.items()})
    want, got = _body(rebuilt), _body(graph)
    if want == got:
        return
    at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
    raise ConfigError(
        f"export-hf writes LLaMA-form graphs (llama, mistral, mixtral); graph {graph.name!r} is "
        f"not the graph its {config['model_type']} config.json imports as (line {at + 2} of the "
        "text differs)",
        expected=want[at].strip() if at < len(want) else "(end of graph)",
        got=got[at].strip() if at < len(got) else "(end of graph)",
    )


def export_hf(
    graph: Graph, folder: str | os.PathLike[str] | None = None, *, dequantize: bool = False
) -> Exported:
    """The checkpoint of `graph` (saved in `folder`, whose tokenizer files it carries), checked."""
    if graph.weights is None:
        raise ConfigError(f"graph {graph.name!r} has no weights to export")
    graph, dequantized = _float_view(graph, dequantize)
    config = config_json(graph)
    check(graph, config)
    store = graph.weights
    assert store is not None
    tensors: dict[str, Source] = {}
    for name, v in graph.params.items():
        shape = tuple(int(d) for d in v.type.shape)  # type: ignore[arg-type]
        dtype = np.dtype(v.type.dtype.numpy)
        if (target := hf_name(name)) is not None:
            tensors[target] = Source(shape, dtype, partial(store.__getitem__, name), name)
            continue
        names = expert_names(name, shape[0])
        if names is None:  # check() passed, so the table lacks a name the builder makes
            raise ConfigError(f"no Hugging Face name for parameter {name!r}")
        for e, target in enumerate(names):
            tensors[target] = Source(shape[1:], dtype, partial(_expert, store, name, e), name)
    vocab = int(config["vocab_size"])
    tokenizer = tokenizer_files(
        Path(folder) if folder is not None else None, vocab, config["max_position_embeddings"]
    )
    return Exported(config, tensors, tokenizer, dequantized)


def _generation(config: dict[str, Any]) -> dict[str, Any]:
    return {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in config}


def export_to_dir(
    graph_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    dequantize: bool = False,
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> tuple[Path, Exported]:
    """Export the saved graph `graph_dir` as the checkpoint folder `out` (written atomically)."""
    from irgraph.atomic import atomic_folder
    from irgraph.output import check_output
    from irgraph.serialize import load

    check_output(out, [graph_dir], force=overwrite, force_name="overwrite=True")
    graph = load(graph_dir)
    exported = export_hf(graph, graph_dir, dequantize=dequantize)
    with atomic_folder(out, overwrite=overwrite, inputs=[graph_dir]) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(exported.config, indent=2) + "\n")
        (tmp / GENERATION_FILE).write_text(
            json.dumps(_generation(exported.config), indent=2) + "\n"
        )
        save_safetensors(
            MappedWeights(exported.tensors),
            tmp / WEIGHTS_FILE,
            metadata={"format": "pt"},
            progress=progress,
        )
        for name, text in exported.tokenizer.files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        provenance = {
            "from": graph.name,
            "model_type": exported.config["model_type"],
            "dequantized": exported.dequantized,
            "tokenizer": exported.tokenizer.note,
        }
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return Path(out), exported


__all__ = ["Exported", "check", "export_hf", "export_to_dir"]
