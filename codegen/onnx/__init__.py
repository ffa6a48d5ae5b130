"""ONNX codegen (imported as `irgraph.codegen.onnx`): IR graph -> ONNX artifact folder.

    from irgraph.codegen.onnx import compile_graph
    compile_graph(graph, "out/llama-onnx", flavour="ort", dtype="f32")

Flavours: `ort` (default) uses ONNX Runtime contrib ops where they express the
IR node exactly (GroupQueryAttention, RotaryEmbedding, SkipSimplifiedLayer-
Normalization); `portable` emits standard ONNX only (opset 23: Attention,
RMSNormalization, RotaryEmbedding where they fit, decompositions otherwise).
Weights go to `model.onnx.data` (external data), written tensor by tensor.
Encoder-decoder graphs become `encoder.onnx` + `model.onnx` (the decoder) in one
artifact. Decoder-only graphs also get `genai_config.json` for onnxruntime-genai.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import onnx
from onnx import helper

from irgraph import kvcache
from irgraph.artifact import copy_extra_files, tool_version, write_artifact
from irgraph.backends import backend
from irgraph.codegen.lowering import legalize
from irgraph.codegen.onnx import (  # noqa: F401  (register their lowerings)
    lower_attention,
    lower_kv_cache,
    lower_moe,
)
from irgraph.codegen.onnx.emitter import DATA_FILE, ONNX_DTYPES, Emitter
from irgraph.codegen.onnx.genai import GENAI_FILE, genai_config
from irgraph.codegen.onnx.lowerings import LOWERINGS
from irgraph.codegen.onnx.split import split_encoder
from irgraph.dtypes import DType
from irgraph.errors import CodegenError, ConfigError
from irgraph.ir import Graph
from irgraph.output import check_output
from irgraph.passes import run_pipeline
from irgraph.passes.last_position import FORWARD, FORWARD_LAST, entry_graphs
from irgraph.progress import Progress, no_progress
from irgraph.registry import get_op

MODEL_FILE, ENCODER_FILE = "model.onnx", "encoder.onnx"
MODEL_LAST_FILE = "model_last.onnx"  # forward_last: logits_last only; weights in model.onnx.data
FLAVOURS = backend("onnx").option("flavour").choices  # "ort" | "portable"
DTYPES = backend("onnx").option("dtype").choices  # "f32" | "f16" | "bf16"
ACCURACY_LEVELS = backend("onnx").option("accuracy_level").choices  # "1" | "4" (MatMulNBits)
OPSET = 23
TARGET = "onnx"
# The passes `irgraph compile` runs for this target after the user's (`--no-default-passes` skips
# them), per flavour. Sibling projections fuse only while the fused weight stays within 2x the
# input width (q/k/v: yes; LLaMA's gate/up: no). Measured on ORT 1.32 CPU, 125M LLaMA decode step
# (CPU ms, median of 8): q/k/v fused 20.0, nothing fused 22.1, q/k/v and gate/up fused 23.9
# (onnxruntime-genai's fp32 build: 21.4).
_FUSE = "fuse-qkv(max_width=2),fuse-gate-up(max_width=2)"
DEFAULT_PASSES = {
    "ort": f"{_FUSE},fuse-add-norm,last-position-logits",
    "portable": f"{_FUSE},last-position-logits",
}


def default_pipeline(options: Mapping[str, str]) -> str:
    """The default pipeline for compile `options` (the backend row's `default_passes`)."""
    return DEFAULT_PASSES[options.get("flavour", "ort")]


def _value_info(e: Emitter, name: str, t: Any) -> Any:
    shape = [d if isinstance(d, int) else str(d) for d in t.shape]
    return helper.make_tensor_value_info(name, e.onnx_type(t.dtype), shape)


def build_model(
    graph: Graph,
    flavour: str = "ort",
    dtype: str = "f32",
    *,
    data: BinaryIO | None = None,
    data_name: str = DATA_FILE,
    written: dict[str, onnx.TensorProto] | None = None,
    progress: Progress = no_progress,
    accuracy_level: str | int = "1",
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The ONNX model of `graph` and facts for the manifest. `data`: a binary file for external
    weights; `written`: the tensors earlier models put in it (shared, see `Emitter`);
    `progress` hears of every node lowered (its weights written); `accuracy_level`: quantized
    linears' MatMulNBits compute (codegen/onnx/quantized.py)."""
    _check_accuracy_level(accuracy_level)
    if flavour not in FLAVOURS:
        raise ConfigError(
            f"unknown ONNX flavour {flavour!r}", expected=" | ".join(FLAVOURS), got=flavour
        )
    if dtype not in DTYPES:
        raise ConfigError(
            f"unknown compute dtype {dtype!r}", expected=" | ".join(DTYPES), got=dtype
        )
    if graph.weights is None:
        raise CodegenError(
            "graph has no weights (structure only); an ONNX artifact needs them", where=graph.name
        )
    graph = legalize(graph)
    LOWERINGS.missing(graph)  # fail before writing anything, naming every op the target lacks
    e = Emitter(graph, flavour, DType(dtype), data, data_name, written, int(accuracy_level))
    what = f"lowering {graph.name} to ONNX"
    for i, node in enumerate(graph.nodes):
        progress(i, len(graph.nodes), what)
        node = dataclasses.replace(
            node, inputs=tuple(get_op(node.op).pad(node.inputs))
        )  # absent -> None
        try:
            outs = LOWERINGS[node.op](e, node, *(e.name(v) for v in node.inputs))
        except CodegenError as err:
            raise CodegenError(
                err.message, expected=err.expected, got=err.got, where=f"node {i} ({node.op})"
            ) from None
        for v, name in zip(node.outputs, outs):
            e.bind(v, name)
    progress(len(graph.nodes), len(graph.nodes), what)
    outputs = []
    for name, v in graph.outputs.items():
        current = e.name(v)
        if current != name:  # an input, a param, or a value that is output under two names
            e.op("Identity", [current], [name])
        outputs.append(_value_info(e, name, v.type))
    inputs = [_value_info(e, n, v.type) for n, v in graph.inputs.items()]
    nodes = _live(e.nodes, set(graph.outputs))
    used = {i for n in nodes for i in n.input}
    initializers = e.initializer_protos(used, progress)
    onnx_graph = helper.make_graph(nodes, graph.name, inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if flavour == "ort":
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(
        onnx_graph,
        opset_imports=opsets,
        producer_name="irgraph",
        producer_version=tool_version("irgraph") or "0",
    )
    model.ir_version = 10
    gqa = sum(n.op_type == "GroupQueryAttention" for n in nodes)
    attention = sum(n.op in ("attention", "latent_attention") for n in graph.nodes)
    facts = {
        "ops": sorted({f"{n.domain + ':' if n.domain else ''}{n.op_type}" for n in nodes}),
        "quantized": _quantized_ops(graph, nodes),
        "gqa": gqa > 0,
        # past and present may be one buffer (GQA reads lengths from the mask): genai's and our
        # fast path
        # (the runtime's shared buffer grows along BNSH's axis 2, concat storage only)
        "share_buffer": gqa > 0
        and gqa == attention
        and "attention_mask" in graph.inputs
        and kvcache.contract_of(graph.meta) == kvcache.CacheContract()
        and all(  # GQA's own past buffers: a quantized cache is dequantized before it
            v.type.dtype.is_float and not kvcache.is_scale(n)
            for n, v in graph.inputs.items()
            if n.startswith("past_key_values.")
        ),
    }
    return model, facts


def _quantized_ops(graph: Graph, nodes: list[onnx.NodeProto]) -> dict[str, list[str]] | None:
    """Quantized weight -> the ops that read it (MatMulNBits, GatherBlockQuantized, dequantized).

    The names are `quantized.py`'s initializer names: `W.nbits` (MatMulNBits) and `W.nbits2d`
    (GatherBlockQuantized) packed for the contrib ops, `W.quantized` for the standard-op
    dequantize.
    """
    readers: dict[str, set[str]] = {}
    for node in nodes:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    result = {}
    for name, v in graph.params.items():
        if v.type.quant is not None:
            ops = readers.get(f"{name}.nbits", set()) | readers.get(f"{name}.nbits2d", set())
            ops &= {"MatMulNBits", "GatherBlockQuantized"}
            if f"{name}.quantized" in readers:
                ops.add("dequantized")
            if ops:
                result[name] = sorted(ops)
    return result or None


def _check_accuracy_level(level: str | int) -> None:
    if str(level) not in ACCURACY_LEVELS:
        raise ConfigError(
            f"unknown MatMulNBits accuracy_level {level!r}",
            expected=" | ".join(ACCURACY_LEVELS),
            got=level,
        )


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes some graph output depends on (lowerings leave views that fused ops bypassed)."""
    needed, live = set(outputs), list[onnx.NodeProto]()
    for node in reversed(nodes):
        if any(o in needed for o in node.output if o):
            live.append(node)
            needed.update(i for i in node.input if i)
    return live[::-1]


def compile_graph(
    graph: Graph,
    out: str | os.PathLike[str],
    *,
    target: str = TARGET,
    flavour: str = "ort",
    dtype: str = "f32",
    force: bool = False,
    progress: Progress = no_progress,
    extra_files: Mapping[str, Path] | None = None,
    passes: Mapping[str, str] | None = None,
    default_passes: bool = True,
    accuracy_level: str | int = "1",
) -> Path:
    """Compile `graph` into the ONNX artifact folder `out` and return its path.

    The folder's layout is described in the module docstring.

    `extra_files` (name -> path) are copied in, e.g. the checkpoint's tokenizer.json;
    `target` is always "onnx" (the signature every `irgraph.backends` compile function has).
    `passes` (the pipelines that made `graph`, e.g. {"user": ..., "default": ...}) goes
    into the manifest. `default_passes` runs DEFAULT_PASSES[flavour] first (`irgraph compile`
    runs them itself, after --passes, and turns this off). A non-empty `out` is refused
    unless `force=True`, and even then replaced only if it is an irgraph output; this is
    checked before lowering (`irgraph.output`).
    """
    check_output(
        out, extra_files.values() if extra_files else (), force=force, force_name="force=True"
    )

    def write(tmp: Path, part: Graph, model_file: str) -> dict[str, Any]:
        """`part` as `model_file`; with logits_last, its forward_last as MODEL_LAST_FILE, whose
        initializers point into the same data file (a weight both use is stored once)."""
        data_file = model_file + ".data"
        entries = entry_graphs(part)
        written: dict[str, onnx.TensorProto] = {}
        with open(tmp / data_file, "wb") as data:
            models, facts = {}, {}
            for entry, file in ((FORWARD, model_file), (FORWARD_LAST, MODEL_LAST_FILE)):
                if entry in entries:
                    models[file], facts[entry] = build_model(
                        entries[entry],
                        flavour,
                        dtype,
                        data=data,
                        data_name=data_file,
                        written=written,
                        progress=progress,
                        accuracy_level=accuracy_level,
                    )
        for i, (file, model) in enumerate(models.items()):
            progress(i, len(models), "saving the ONNX model")
            onnx.save_model(model, tmp / file)
        progress(len(models), len(models), "saving the ONNX model")
        del models
        checked = (model_file, MODEL_LAST_FILE) if FORWARD_LAST in entries else (model_file,)
        for i, file in enumerate(checked):
            progress(i, len(checked), "checking the ONNX model")
            onnx.checker.check_model(str(tmp / file))
        progress(len(checked), len(checked), "checking the ONNX model")
        if (tmp / data_file).stat().st_size == 0:
            (tmp / data_file).unlink()
        return {
            **facts[FORWARD],
            "model_last": MODEL_LAST_FILE if FORWARD_LAST in entries else None,
        }

    def emit(tmp: Path) -> dict[str, Any]:
        parts = split_encoder(graph)
        encoder = None
        if (
            parts is not None
        ):  # encoder-decoder: the encoder runs once per prompt, the decoder per step
            write(tmp, parts[0], ENCODER_FILE)
            encoder = {
                "model": ENCODER_FILE,
                "inputs": list(parts[0].inputs),
                "outputs": list(parts[0].outputs),
            }
        facts = write(tmp, parts[1] if parts is not None else graph, MODEL_FILE)
        entry: dict[str, Any] = {
            "onnx": {
                "model": MODEL_FILE,
                "model_last": facts["model_last"],
                "encoder": encoder,
                "flavour": flavour,
                "dtype": dtype,
                "accuracy_level": int(accuracy_level),
                "opset": OPSET,
                "ops": facts["ops"],
                "quantized": facts["quantized"],
                "external_data": (tmp / DATA_FILE).exists(),
                "share_buffer": facts["share_buffer"],
            },
            "left_padding": not facts["gqa"],
            "passes": passes,
        }
        copy_extra_files(graph, extra_files or {}, tmp)
        config = genai_config(graph, share_buffer=facts["share_buffer"], model_file=MODEL_FILE)
        if config is not None:
            (tmp / GENAI_FILE).write_text(json.dumps(config, indent=2) + "\n")
            entry["onnx"]["genai_config"] = GENAI_FILE
        return entry

    import onnxruntime

    if target != TARGET:
        raise ConfigError(f"the ONNX backend has one target, {TARGET!r}", got=target)
    if flavour not in FLAVOURS:
        raise ConfigError(
            f"unknown ONNX flavour {flavour!r}", expected=" | ".join(FLAVOURS), got=flavour
        )
    if dtype not in DTYPES:
        raise ConfigError(
            f"unknown compute dtype {dtype!r}", expected=" | ".join(DTYPES), got=dtype
        )
    _check_accuracy_level(accuracy_level)
    if default_passes:
        graph = run_pipeline(graph, DEFAULT_PASSES[flavour]).graph
        passes = {**(passes or {}), "default": DEFAULT_PASSES[flavour]}
    ort_version = onnxruntime.__version__
    return write_artifact(
        out,
        graph,
        TARGET,
        emit,
        force=force,
        tools={"onnx": onnx.__version__, "onnxruntime": ort_version},
        requires={"onnxruntime": ".".join(ort_version.split(".")[:2])},
    )


__all__ = [
    "DEFAULT_PASSES",
    "DTYPES",
    "FLAVOURS",
    "MODEL_FILE",
    "MODEL_LAST_FILE",
    "ACCURACY_LEVELS",
    "ONNX_DTYPES",
    "build_model",
    "compile_graph",
]
