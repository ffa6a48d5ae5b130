"""TVM artifacts: the shared artifact folder (`irgraph.artifact`) with a TVM library.

    out/
      manifest.json        the shared entries (IO names/dtypes/symbolic dims, KV-cache layout,
                           tool versions, sha256 of every file) plus a `tvm` section: target
                           JSON, the `forward` signature (inputs, weight args with their
                           layouts and shapes, outputs), the CUDA kernel check, and what a
                           machine needs to load it
      graph.irg            the IR text the library was built from
      weights.safetensors  the graph's weights in their checkpoint layout
      model.so             the compiled Relax VM executable (host, CUDA or aarch64)

Weights stay outside the library, in checkpoint layout: the loader packs the
linear weights the manifest marks `packed{nb}` once at load time, so one build
serves every checkpoint of the architecture. The runtime side reads and checks the
folder (`irgraph.runtimes.tvm.read_manifest`) without importing this module.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from irgraph import artifact as shared
from irgraph.codegen.lowering import legalize
from irgraph.codegen.tvm import lowering, targets
from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.lm import LOGITS, LOGITS_LAST
from irgraph.output import check_output
from irgraph.passes import run_pipeline
from irgraph.progress import Progress, no_progress
from irgraph.weights import save_safetensors

LIBRARY, WEIGHTS = "model.so", "weights.safetensors"
# The passes `irgraph compile` runs for TVM targets after the user's (`--no-default-passes` skips
# them): logits_last gives the artifact its `forward_last` (the LM head on the last row only).
DEFAULT_PASSES = "last-position-logits"
# What `compile_graph` reports to `progress`, in order (tvm.compile is one long step)
BUILD_STAGES = (
    "lowering to Relax",
    "Relax pipeline",
    "tvm.compile",
    "exporting the library",
    "writing the weights",
)


def default_pipeline(options: Mapping[str, str]) -> str:
    """The default pipeline for compile `options` (the backend row's `default_passes`)."""
    return DEFAULT_PASSES


_NEEDS = {
    "tvm-llvm": (
        "x86_64 Linux with the host CPU's instruction set ({mcpu}); Python with apache-tvm {tvm}"
    ),
    "tvm-cuda": (
        "an NVIDIA GPU of compute capability {arch} or newer with its CUDA driver; Python with "
        "apache-tvm {tvm} built with CUDA and nvcc on PATH (the library carries CUDA source, "
        "compiled when it is loaded; set TVM_CUDA_COMPILE_MODE=nvcc)"
    ),
    "tvm-aarch64": (
        "64-bit Arm Linux (aarch64, NEON) with libtvm_runtime.so/libtvm_ffi.so from the "
        "manylinux aarch64 apache-tvm {tvm} / apache-tvm-ffi wheels; codegen/tvm/runner runs it "
        "without Python"
    ),
}


ACTIVATIONS = ("f32", "int8")


def _check_activations(activations: str, spec: targets.TargetSpec) -> None:
    """int8 activations need tvm-llvm on a CPU with AVX-512 VNNI (vpdpbusd)."""
    if activations not in ACTIVATIONS:
        raise ConfigError(
            "unknown option activations", expected=" | ".join(ACTIVATIONS), got=activations
        )
    if activations == "f32":
        return
    from tvm.target import codegen

    vnni = spec.name == "tvm-llvm" and codegen.target_has_features("avx512vnni", spec.target)
    if not vnni:
        mcpu = spec.target.attrs.get("mcpu", "generic")
        raise ConfigError(
            "activations=int8 runs AVX-512 VNNI kernels: tvm-llvm on a CPU that has them",
            got=f"{spec.name}, mcpu {mcpu}, without avx512vnni",
        )


def compile_graph(
    graph: Graph,
    out: str | os.PathLike[str],
    *,
    target: str = "tvm-llvm",
    cuda_arch: str = "sm_80",
    activations: str = "f32",
    force: bool = False,
    extra_files: Mapping[str, Path] | None = None,
    progress: Progress = no_progress,
    passes: Mapping[str, str] | None = None,
    default_passes: bool = True,
) -> Path:
    """Compile `graph` for a TVM target into the artifact folder `out`; returns its path.

    A non-empty `out` is refused unless `force=True`, and even then replaced only if it
    is an irgraph output; this is checked before the (slow) build (`irgraph.output`).
    `extra_files` (name -> path) are copied in, e.g. the checkpoint's tokenizer.json;
    `progress(done, total, what)` hears of each build stage as it starts (BUILD_STAGES).
    `activations="int8"` (tvm-llvm, AVX-512 VNNI hosts): int4 linears quantize their
    activations to int8 per 32 values and use VNNI dot products (`vnni_kernels`; approximate).
    `passes` (the pipelines that made `graph`) goes into the manifest. `default_passes` runs
    DEFAULT_PASSES first (`irgraph compile` runs them itself, after --passes, and turns this off).
    """
    import tvm
    import tvm_ffi

    spec = targets.resolve(target, cuda_arch)
    _check_activations(activations, spec)
    check_output(
        out, extra_files.values() if extra_files else (), force=force, force_name="force=True"
    )
    if graph.weights is None:
        raise ConfigError(
            "graph has no weights (structure only); a TVM artifact needs them", where=graph.name
        )
    graph = legalize(graph)  # so the weights saved are the ones the lowered graph reads
    if default_passes:
        graph = run_pipeline(graph, DEFAULT_PASSES).graph
        passes = {**(passes or {}), "default": DEFAULT_PASSES}
    store = graph.weights
    if store is None:  # the default passes keep the weights they were given
        raise ConfigError("the default passes dropped the weights", where=graph.name)
    started = time.perf_counter()

    def stage(name: str) -> None:
        i = BUILD_STAGES.index(name)
        progress(i, len(BUILD_STAGES), f"TVM build: {name}")  # i stages done

    stage("lowering to Relax")
    mod, weight_args = lowering.build_module(
        graph,
        spec.name.removeprefix("tvm-"),
        packed=spec.packed,
        int8_activations=activations == "int8",
    )
    ex = targets.compile_module(mod, spec, stage)
    cuda_check = targets.check_cuda_kernels(ex, spec.cuda_arch) if spec.cuda_arch else None

    def emit(tmp: Path) -> dict[str, Any]:
        stage("exporting the library")
        targets.export(ex, spec, tmp / LIBRARY)
        stage("writing the weights")
        save_safetensors(  # as stored: a quantized weight's data, scales and zero points
            {name: np.asarray(store[name]) for name in graph.stored_names()}, tmp / WEIGHTS
        )
        shared.copy_extra_files(graph, extra_files or {}, tmp)
        target_json = spec.target.export()
        needs = _NEEDS[spec.name].format(
            mcpu=target_json.get("mcpu", "generic"), tvm=tvm.__version__, arch=spec.cuda_arch
        )
        return {
            "passes": dict(passes) if passes is not None else None,
            "tvm": {
                "library": LIBRARY,
                "weights": WEIGHTS,
                "function": lowering.FUNCTION,
                "function_last": lowering.FUNCTION_LAST if LOGITS_LAST in graph.outputs else None,
                "outputs_last": [n for n in graph.outputs if n != LOGITS]
                if LOGITS_LAST in graph.outputs
                else None,
                "target": _jsonable(target_json),
                "cuda_arch": spec.cuda_arch,
                "activations": activations,
                "device": spec.device,
                "num_inputs": len(graph.inputs),
                "weight_args": [
                    {
                        "name": a.name,
                        "layout": a.layout,
                        "dtype": str(a.type(graph)[1]),
                        "shape": list(a.type(graph)[0]),
                    }
                    for a in weight_args
                ],
                "cuda_kernels": cuda_check,
                "needs": needs,
                "build_seconds": round(time.perf_counter() - started, 2),
            },
        }

    folder = shared.write_artifact(
        out,
        graph,
        spec.name,
        emit,
        force=force,
        tools={"apache-tvm": tvm.__version__, "apache-tvm-ffi": tvm_ffi.__version__},
        requires={"apache-tvm": tvm.__version__},
    )
    progress(len(BUILD_STAGES), len(BUILD_STAGES), "TVM build")
    return folder


def _jsonable(value: Any) -> Any:
    """TVM's target export (tvm-ffi Map/Array, nested targets) as plain JSON values."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "__len__") and hasattr(value, "__getitem__"):
        return [_jsonable(v) for v in value]
    if hasattr(value, "export"):  # a nested Target (the CUDA host)
        return _jsonable(value.export())
    return str(value)
