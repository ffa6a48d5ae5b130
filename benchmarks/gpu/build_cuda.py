"""Compile one model for tvm-cuda, its kernels precompiled to a cubin here (no GPU needed).

TVM's CUDA runtime module only loads when libcuda.so.1 does: run with the stub from cuda_stub.c on
LD_LIBRARY_PATH. The kernels are compiled by nvcc (sm_$CUDA_ARCH, default 90), so the exported
model.so carries fmt=cubin and the device needs no compiler.
usage: LD_LIBRARY_PATH=STUB_DIR python build_cuda.py MODEL OUT [irgraph compile options]
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import tvm_ffi
from tvm.base import _LOADED_LIBS

import irgraph.codegen.tvm.targets as targets
from irgraph.cli import main

ARCH = os.environ.get("CUDA_ARCH", "90")
_cubin_bytes: dict[int, int] = {}

if "tvm_runtime_cuda" not in _LOADED_LIBS:
    sys.exit("libtvm_runtime_cuda.so did not load: put the stub libcuda.so.1 on LD_LIBRARY_PATH")


@tvm_ffi.register_global_func("tvm_callback_cuda_compile", override=True)
def _nvcc(code: str):
    """TVM's hook for CUDA source -> binary: nvcc to a cubin for sm_ARCH."""
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d, "k.cu"), Path(d, "k.cubin")
        src.write_text(code)
        gencode = f"-gencode=arch=compute_{ARCH},code=sm_{ARCH}"
        subprocess.run(["nvcc", "--cubin", "-O3", "-w", gencode, "-o", out, src], check=True)
        data = out.read_bytes()
    _cubin_bytes[hash(code)] = len(data)
    return tvm_ffi.Bytes(data) if hasattr(tvm_ffi, "Bytes") else bytearray(data)


def _check(ex, arch, nvcc=None):
    """The cubin _nvcc already built from the same source: report it instead of rebuilding."""
    source = targets.cuda_sources(ex)
    kernels = source.count('extern "C" __global__')
    if not kernels:
        raise RuntimeError("no CUDA kernels in the compiled module")
    return {"kernels": kernels, "cubin_bytes": _cubin_bytes.get(hash(source), -1)}


targets.check_cuda_kernels = _check

if __name__ == "__main__":
    name, out, *rest = sys.argv[1:]
    sys.argv = ["irgraph", "compile", name, "--target", "tvm-cuda", "--cuda-arch", f"sm_{ARCH}"]
    sys.argv += ["-o", out, "--force", *rest]
    sys.exit(main())
