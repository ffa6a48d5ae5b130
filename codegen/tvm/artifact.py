"""Write and read TVM artifacts: a folder any irgraph runtime (or the native runner) opens.

    out/
      manifest.json        format, target, TVM versions, IO names/dtypes/symbolic dims,
                           the `forward` signature (inputs, weight args and their layouts,
                           outputs), KV-cache layout, what a machine needs to load it, sha256s
      graph.irg            the IR text the library was built from
      weights.safetensors  the graph's weights in their checkpoint layout
      model.so             the compiled Relax VM executable (host, CUDA or aarch64)

Weights stay outside the library, in checkpoint layout: the loader packs the
linear weights the manifest marks `packed{nb}` once at load time, so one build
serves every checkpoint of the architecture. Written into a temporary sibling
folder and renamed into place, so a failed build leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from irgraph.codegen.tvm import lowering, targets
from irgraph.errors import ConfigError, RuntimeFailure
from irgraph.ir import Graph
from irgraph.weights import save_safetensors

MANIFEST, LIBRARY, GRAPH, WEIGHTS = "manifest.json", "model.so", "graph.irg", "weights.safetensors"
FORMAT, FORMAT_VERSION = "irgraph-artifact", 1

_NEEDS = {
    "tvm-llvm": "x86_64 Linux with the host CPU's instruction set ({mcpu}); Python with apache-tvm {tvm}",
    "tvm-cuda": ("an NVIDIA GPU of compute capability {arch} or newer with its CUDA driver; Python with "
                 "apache-tvm {tvm} built with CUDA and nvcc on PATH (the library carries CUDA source, "
                 "compiled when it is loaded; set TVM_CUDA_COMPILE_MODE=nvcc)"),
    "tvm-aarch64": ("64-bit Arm Linux (aarch64, NEON) with libtvm_runtime.so/libtvm_ffi.so from the "
                    "manylinux aarch64 apache-tvm {tvm} / apache-tvm-ffi wheels; codegen/tvm/runner runs it "
                    "without Python"),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _io(name: str, t: Any) -> dict[str, Any]:
    return {"name": name, "dtype": str(t.dtype), "shape": [d if isinstance(d, int) else str(d) for d in t.shape]}


def compile_graph(graph: Graph, out: str | os.PathLike, *, target: str = "tvm-llvm",
                  cuda_arch: str = "sm_80") -> Path:
    """Compile `graph` for a TVM target into the artifact folder `out`; returns its path."""
    import tvm
    import tvm_ffi

    spec = targets.resolve(target, cuda_arch)
    if graph.weights is None:
        raise ConfigError("graph has no weights (structure only); a TVM artifact needs them", where=graph.name)
    started = time.perf_counter()
    mod, weight_args = lowering.build_module(graph, spec.device if spec.name != "tvm-aarch64" else "cpu",
                                             packed=spec.packed)
    ex = targets.compile_module(mod, spec)
    cuda_check = targets.check_cuda_kernels(ex, spec.cuda_arch) if spec.cuda_arch else None
    target_dir = Path(out)
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.", dir=target_dir.parent))
    try:
        targets.export(ex, spec, tmp / LIBRARY)
        (tmp / GRAPH).write_text(str(graph))
        save_safetensors({name: np.asarray(graph.weight(name)) for name in graph.params}, tmp / WEIGHTS)
        target_json = spec.target.export()
        needs = _NEEDS[spec.name].format(mcpu=target_json.get("mcpu", "generic"), tvm=tvm.__version__,
                                         arch=spec.cuda_arch)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "target": spec.name,
            "model": graph.name,
            "inputs": [_io(n, v.type) for n, v in graph.inputs.items()],
            "outputs": [_io(n, v.type) for n, v in graph.outputs.items()],
            "kv_cache": {"layout": "bnsh", "inputs": [n for n in graph.inputs if n.startswith("past_key_values.")]},
            "quantization": None,
            "meta": graph.meta,
            "tools": {"apache-tvm": tvm.__version__, "apache-tvm-ffi": tvm_ffi.__version__,
                      "irgraph": _irgraph_version()},
            "tvm": {
                "library": LIBRARY,
                "function": lowering.FUNCTION,
                "target": _jsonable(target_json),
                "cuda_arch": spec.cuda_arch,
                "device": spec.device,
                "num_inputs": len(graph.inputs),
                "weight_args": [
                    {"name": a.name, "layout": a.layout, "dtype": str(graph.params[a.name].type.dtype),
                     "shape": list(lowering.packed_shape(graph.params[a.name].type, a.layout))}
                    for a in weight_args],
                "cuda_kernels": cuda_check,
                "needs": needs,
                "build_seconds": round(time.perf_counter() - started, 2),
            },
            "files": {name: sha256(tmp / name) for name in (LIBRARY, GRAPH, WEIGHTS)},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if target_dir.exists():
            old = target_dir.with_name(f".{target_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target_dir.rename(old)
            tmp.rename(target_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target_dir


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


def _irgraph_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("irgraph")
    except PackageNotFoundError:
        return "unknown"


def read_manifest(folder: str | os.PathLike, *, verify: bool = True) -> dict[str, Any]:
    """The manifest of a TVM artifact, checked: format, target, TVM version and file hashes."""
    import tvm

    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise RuntimeFailure(f"not an artifact: no {MANIFEST}", where=str(folder))
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RuntimeFailure(f"manifest is not JSON: {e}", where=str(path)) from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise RuntimeFailure("unsupported artifact format", expected=f"{FORMAT} v{FORMAT_VERSION}",
                             got=f"{manifest.get('format')} v{manifest.get('format_version')}", where=str(path))
    if manifest.get("target") not in targets.TARGETS:
        raise RuntimeFailure("not a TVM artifact", expected=" | ".join(targets.TARGETS),
                             got=manifest.get("target"), where=str(path))
    built = manifest.get("tools", {}).get("apache-tvm", "")
    if built.split(".")[:2] != tvm.__version__.split(".")[:2]:
        raise RuntimeFailure("artifact was built with another TVM release", expected=tvm.__version__, got=built,
                             where=str(path))
    if verify:
        for name, digest in manifest.get("files", {}).items():
            file = Path(folder) / name
            if not file.is_file() or sha256(file) != digest:
                raise RuntimeFailure(f"{name} is missing or does not match its manifest hash", where=str(folder))
    return manifest
