"""Hugging Face checkpoint import: config.json + safetensors -> an irgraph Graph with weights.

    graph = import_hf("path/to/llama")            # weights memory-mapped, transformed lazily
    import_to_dir("path/to/llama", "out/llama")   # saved graph folder (+ tokenizer.json)

Steps: the model_type's translator turns config.json into a ModelConfig
(rejecting keys it does not understand); the zoo builder builds the graph;
the tensor-role table maps every checkpoint tensor to an irgraph parameter,
with layout transforms where the checkpoint packs tensors differently.
Parameters keep the checkpoint's storage dtype (fp32/fp16/bf16); every op
computes in fp32.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.model_zoo.hf_import.checkpoint import TOKENIZER_FILE, open_checkpoint
from irgraph.model_zoo.hf_import.quant_sources import quantized_names, quantized_sources
from irgraph.model_zoo.hf_import.quantized import quant_linear, read_scheme
from irgraph.model_zoo.hf_import.retype import retype_params
from irgraph.model_zoo.hf_import.roles import assign_roles
from irgraph.model_zoo.hf_import.translators import SUPPORTED, translate
from irgraph.model_zoo.hf_import.translators.common import TOKEN_KEYS
from irgraph.model_zoo.hf_import.weights import MappedWeights, Source, assemble
from irgraph.output import check_output
from irgraph.progress import Progress, no_progress
from irgraph.retype import retype_params as retype_quantized
from irgraph.serialize import save
from irgraph.tokenizer import check_tokenizer
from irgraph.types import TensorType


def import_hf(path: str | os.PathLike[str]) -> Graph:
    """The graph of the Hugging Face checkpoint folder `path`, weights attached (not copied).

    A checkpoint with a `quantization_config` (GPTQ, AWQ, compressed-tensors) gets its
    quantized linears in the IR's quantized form (`quantized.py`); others fail by name.
    """
    ckpt = open_checkpoint(path)
    where = ckpt.config_path
    scheme = read_scheme(ckpt.config, where)
    raw = ckpt.config
    if scheme is not None:  # read here; the translator sees the model's keys only
        raw = {k: v for k, v in raw.items() if k != "quantization_config"}
    plan = translate(raw, where)
    names: list[str] = list(ckpt.tensors)
    modules: dict[str, str] = {}
    if scheme is not None:
        names, modules = quantized_names(names, scheme)
    roles = assign_roles(names, where=str(ckpt.folder))
    sources = assemble(
        plan,
        {r: n for r, n in roles.items() if n not in modules},
        ckpt.tensors,
        where=str(ckpt.folder),
    )
    linears = {
        role: quant_linear(scheme, ckpt.tensors, modules[n], str(ckpt.folder))  # type: ignore[arg-type]
        for role, n in roles.items()
        if n in modules
    }
    for role, q in linears.items():
        sources[role] = Source(q.shape, np.dtype(np.float32), _no_float(role), q.origin)
    config = plan.config
    if config.tied_embeddings and "lm_head.weight" in sources:
        # a checkpoint with its own head wins over the config (transformers does the same)
        config = config.replace(tied_embeddings=False)
    from irgraph.model_zoo.builder import build_graph

    _check_layer_count(max(config.layers, config.encoder_layers), sources, where)
    graph = build_graph(config, weights=None)
    _check_coverage(graph, sources, str(ckpt.folder))
    graph = retype_params(
        graph,
        {
            n: DType.from_numpy(s.dtype)
            for n, s in sources.items()
            if n in graph.params and n not in linears
        },
    )
    stored = {n: s for n, s in sources.items() if n in graph.params}
    if linears:
        graph = retype_quantized(
            graph, {n: TensorType(q.spec.storage, q.shape, q.spec) for n, q in linears.items()}
        )
        stored = quantized_sources(graph, stored, linears, str(ckpt.folder))
    graph.weights = MappedWeights(stored)
    graph.name = ckpt.folder.resolve().name
    graph.meta.update(
        model=ckpt.config.get("model_type"),
        vocab_size=config.vocab_size,
        **_token_meta(plan.meta, ckpt.generation),
    )
    graph.verify()
    return graph


def _no_float(role: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        raise ConfigError(f"{role} is quantized; its float weight is never read")

    return load


def import_to_dir(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> Path:
    """Import `path` and save it as a graph folder `out` (atomic), tokenizer.json carried along.

    `progress` hears of every weight read, transformed and written (the slow part).

    A non-empty `out` is refused unless `overwrite=True` (and then replaced only if irgraph
    wrote it); `out` overlapping the checkpoint folder is always refused (`irgraph.output`).
    """
    check_output(out, [path], force=overwrite, force_name="overwrite=True")
    graph = import_hf(path)
    tokenizer = Path(path) / TOKENIZER_FILE
    extra = {TOKENIZER_FILE: tokenizer} if tokenizer.is_file() else {}
    if extra:  # an unreadable tokenizer is refused here, not when the graph is first used
        check_tokenizer(tokenizer, None)
    return save(
        graph, out, extra_files=extra, overwrite=overwrite, inputs=[path], progress=progress
    )


_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def _check_layer_count(layers: int, sources: dict[str, Source], where: str) -> None:
    """More layers than the checkpoint holds fail here, before the graph is built (a config
    stating 10**12 layers would otherwise build until memory runs out)."""
    held = max((int(m[1]) + 1 for name in sources if (m := _LAYER.search(name))), default=0)
    if layers > held:
        raise ConfigError(
            f"declares {layers} layers, but the checkpoint holds tensors for {held}", where=where
        )


def _check_coverage(graph: Graph, sources: dict[str, Source], where: str) -> None:
    """Every parameter gets a tensor of its shape; every checkpoint tensor is used."""
    missing = sorted(set(graph.params) - set(sources))
    unused = sorted(set(sources) - set(graph.params))
    if missing or unused:
        parts = []
        if missing:
            parts.append(
                f"no checkpoint tensor for {', '.join(missing[:8])}"
                + (" ..." if len(missing) > 8 else "")
            )
        if unused:
            origins = [f"{sources[n].origin} (as {n})" for n in unused[:8]]
            parts.append(f"checkpoint tensors the model does not use: {', '.join(origins)}")
        raise ConfigError("; ".join(parts), where=where)
    for name, v in graph.params.items():
        if tuple(sources[name].shape) != tuple(v.type.shape):
            raise ConfigError(
                f"tensor for {name!r} has the wrong shape",
                expected=list(v.type.shape),
                got=list(sources[name].shape),
                where=f"{where}: {sources[name].origin}",
            )


def _token_meta(ids: dict[str, object], generation: dict[str, object]) -> dict[str, object]:
    """Token ids from config.json, else generation_config.json; a list keeps its first as the id."""
    meta: dict[str, object] = {}
    for key in TOKEN_KEYS:
        value = ids.get(key)
        if value is None:
            value = generation.get(key)
        if isinstance(value, list):
            meta[key.replace("_id", "_ids")] = value
            value = value[0] if value else None
        if value is not None or key != "decoder_start_token_id":  # decoder-only models have none
            meta[key] = value
    return meta


__all__ = ["SUPPORTED", "import_hf", "import_to_dir"]
