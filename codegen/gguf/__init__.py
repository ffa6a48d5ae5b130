"""GGUF codegen (imported as `irgraph.codegen.gguf`): IR graph -> `model.gguf` for llama.cpp.

    from irgraph.codegen.gguf import compile_graph
    compile_graph(graph, "out/llama-gguf", dtype="f16")

llama.cpp runs its own graph builder per architecture, so a GGUF file holds weights and
hyperparameters only. The graph's structure picks the architecture (`structure.read`, then
`archs.choose`: by what the nodes compute, never by the model's name); the weights get
gguf-py's tensor names, llama.cpp's rotary row order and their storage types
(`tensors.plan`), and the file is written by gguf-py's `GGUFWriter`. Everything that can
refuse the graph runs before a byte is written.

The artifact: `model.gguf`, `graph.irg`, `manifest.json` (its `gguf` entry: architecture,
dtype, tensor types, fallbacks, vocabulary), plus a carried tokenizer.json.
"""

from __future__ import annotations

import ctypes
import os
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from irgraph.artifact import copy_extra_files, tool_version, write_artifact
from irgraph.backends import backend
from irgraph.codegen.gguf.archs import choose
from irgraph.codegen.gguf.structure import read
from irgraph.codegen.gguf.tensors import KQUANTS, REQUANTIZE, plan, write_tensors
from irgraph.codegen.gguf.vocab import write_vocab
from irgraph.errors import CodegenError, ConfigError
from irgraph.ir import Graph
from irgraph.output import check_output
from irgraph.passes import run_pipeline

TARGET = "gguf"
MODEL_FILE = "model.gguf"
TOKENIZER = "tokenizer.json"
DTYPES = backend("gguf").option("dtype").choices  # "f32" | "f16" | "bf16"
DEFAULT_PASSES = "dce"  # the file holds weights only: nothing to fuse for llama.cpp's builders

Progress = Callable[[int, int], None]
_LOG: Any = None  # the no-op llama.cpp log callback, kept alive while llama.cpp holds it


def default_pipeline(options: Mapping[str, str]) -> str:
    """The passes `irgraph compile` runs for this target after the user's."""
    return DEFAULT_PASSES


def _import_gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise ConfigError(
            "--target gguf needs the gguf package: pip install 'irgraph[llama]'"
        ) from None
    return gguf


def _import_llama(requantize: str) -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError(
            f"--requantize {requantize} runs llama.cpp's quantizer: pip install 'irgraph[llama]'"
        ) from None
    return llama_cpp


def _kquantize(llama: Any, source: Path, out: Path, requantize: str) -> None:
    """`source` (f32) quantized by llama.cpp's llama_model_quantize into `out`; `source` removed.

    llama.cpp picks each tensor's type for the k-quant mix and falls back where a row is not a
    whole 256-block (the manifest's tensor_types lists what it chose).
    """
    global _LOG
    if _LOG is None:  # library code prints nothing: llama.cpp's log goes nowhere
        _LOG = llama.llama_log_callback(lambda level, text, data: None)
        llama.llama_log_set(_LOG, ctypes.c_void_p(0))
    params = llama.llama_model_quantize_default_params()
    params.ftype = KQUANTS[requantize]
    rc = llama.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    source.unlink()
    if rc != 0:
        raise CodegenError(f"llama.cpp's quantizer failed for {requantize} (code {rc})")


def compile_graph(
    graph: Graph,
    out: str | os.PathLike[str],
    *,
    target: str = TARGET,
    dtype: str = "f32",
    requantize: str = "none",
    force: bool = False,
    progress: Progress | None = None,
    extra_files: Mapping[str, Path] | None = None,
    passes: Mapping[str, str] | None = None,
    default_passes: bool = True,
) -> Path:
    """Compile `graph` into the GGUF artifact folder `out` and return its path.

    `dtype`: storage of the weight matrices (norms, biases and the router stay f32);
    `requantize`: a GGML block type every matrix is quantized to (quantized IR weights from
    their dequantized values), "none" to keep the graph's own. The other arguments are every
    backend's (`irgraph.backends`).
    """
    check_output(
        out, extra_files.values() if extra_files else (), force=force, force_name="force=True"
    )
    if target != TARGET:
        raise ConfigError(f"the GGUF backend has one target, {TARGET!r}", got=target)
    if dtype not in DTYPES:
        raise ConfigError("unknown GGUF dtype", expected=" | ".join(DTYPES), got=dtype)
    if requantize not in (*REQUANTIZE, *KQUANTS):
        raise ConfigError(
            "unknown GGML type for --requantize",
            expected=" | ".join((*REQUANTIZE, *KQUANTS)),
            got=requantize,
        )
    gguf = _import_gguf()
    llama = _import_llama(requantize) if requantize in KQUANTS else None
    if graph.weights is None:
        raise CodegenError("graph has no weights (structure only); a GGUF file needs them")
    if default_passes:
        graph = run_pipeline(graph, DEFAULT_PASSES).graph
        passes = {**(passes or {}), "default": DEFAULT_PASSES}
    structure = read(graph)
    arch = choose(structure, graph.name)
    tensors = plan(graph, structure, arch, "f32" if llama else dtype, requantize)

    def emit(tmp: Path) -> dict[str, Any]:
        path = tmp / (MODEL_FILE + ".f32" if llama else MODEL_FILE)
        writer = gguf.GGUFWriter(str(path), arch.gguf_name)
        writer.add_name(graph.name)
        arch.keys(writer, structure)
        tokenizer = (extra_files or {}).get(TOKENIZER)
        vocabulary = write_vocab(
            writer, graph, structure.vocab, Path(tokenizer) if tokenizer else None
        )
        write_tensors(writer, tensors.tensors)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        if llama is not None:
            _kquantize(llama, path, tmp / MODEL_FILE, requantize)
        copy_extra_files(graph, extra_files or {}, tmp)
        return {
            "gguf": {
                "model": MODEL_FILE,
                "architecture": arch.gguf_name,
                "dtype": dtype,
                "requantize": requantize,
                "tensor_types": dict(
                    Counter(t.tensor_type.name for t in gguf.GGUFReader(tmp / MODEL_FILE).tensors)
                ),
                "fallbacks": tensors.fallbacks,
                "rope": arch.rope,
                "vocabulary": vocabulary,
                "context_length": structure.max_position or 2048,
            },
            "left_padding": False,
            # what `irgraph compile` prints after the artifact's name
            "notes": [f"{name} kept as {why}" for name, why in tensors.fallbacks.items()],
            "passes": passes,
        }

    return write_artifact(
        out,
        graph,
        TARGET,
        emit,
        force=force,
        tools={"gguf": tool_version("gguf")},
        requires={},
    )


__all__ = ["DEFAULT_PASSES", "MODEL_FILE", "compile_graph", "default_pipeline"]
