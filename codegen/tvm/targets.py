"""TVM targets of irgraph: `tvm-llvm`, `tvm-cuda` and `tvm-aarch64`.

Host CPU, CUDA sm_80/sm_90 and aarch64 (cross-compiled), respectively.

Each target name maps to a TVM `Target`, a Relax build pipeline and a way to
export the shared library:
  tvm-llvm      the host CPU as TVM detects it; packed-weight linear kernels.
  tvm-cuda      dlight GPU schedules on every kernel (TVM silently compiles
                unscheduled kernels for the *host* otherwise, docs/tvm.md §2), so the
                build checks that every kernel is bound to GPU threads and that
                every generated CUDA kernel compiles with the local `nvcc`.
  tvm-aarch64   64-bit Arm Linux; the `.so` is linked by a cross C++ compiler
                found as $IRGRAPH_AARCH64_CXX or `aarch64-linux-gnu-g++` on PATH
                (Debian: `apt-get install -y gcc-aarch64-linux-gnu
                g++-aarch64-linux-gnu qemu-user`, see runner/setup.sh), with
                $IRGRAPH_AARCH64_SYSROOT passed as --sysroot when set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tvm
from tvm import relax
from tvm.target import Target

from irgraph.backends import backend
from irgraph.codegen.tvm.reproducible import sort_shape_func_stores
from irgraph.errors import CodegenError

TARGETS = backend("tvm").targets  # one list of names: the backend table's row
CUDA_ARCHS = backend("tvm").option("cuda_arch").choices
AARCH64_TRIPLE = "aarch64-linux-gnu"
CXX_ENV, SYSROOT_ENV = "IRGRAPH_AARCH64_CXX", "IRGRAPH_AARCH64_SYSROOT"


@dataclass(frozen=True)
class TargetSpec:
    """What one irgraph target name means to TVM."""

    name: str
    target: Target
    packed: int  # linear weight block for the CPU kernel; 0 = plain layout (GPU)
    device: str  # "cpu" | "cuda": where the runtime allocates tensors
    cuda_arch: str | None = None


def resolve(name: str, cuda_arch: str = "sm_80") -> TargetSpec:
    """The TargetSpec of an irgraph target name; ConfigError-style CodegenError when unknown."""
    if name == "tvm-llvm":
        return TargetSpec(name, Target.from_device(tvm.cpu()), 32, "cpu")
    if name == "tvm-aarch64":
        target = Target({"kind": "llvm", "mtriple": AARCH64_TRIPLE, "mattr": ["+neon"]})
        return TargetSpec(name, target, 32, "cpu")
    if name == "tvm-cuda":
        if cuda_arch not in CUDA_ARCHS:
            raise CodegenError(
                "unsupported --cuda-arch",
                expected=" | ".join(CUDA_ARCHS),
                got=cuda_arch,
                where="target tvm-cuda",
            )
        target = Target({"kind": "cuda", "arch": cuda_arch}, host={"kind": "llvm"})
        return TargetSpec(name, target, 0, "cuda", cuda_arch)
    raise CodegenError("unknown TVM target", expected=" | ".join(TARGETS), got=name)


def _cuda_pipeline(target: Target) -> tvm.transform.Pass:
    """The default CUDA pipeline with dlight on every kernel and tensorization off.

    Tensorization is off because dl.gpu.Matmul segfaults on fp16 GEMMs with a
    dynamic M and K >= 256 in TVM 0.27.0.post1 (docs/tvm.md §2); SIMT kernels are
    slower on tensor cores but correct for every shape.
    """
    from tvm.relax import pipeline as P
    from tvm.relax.backend.cuda.pipeline import dataflow_lower_passes
    from tvm.s_tir import dlight as dl

    @tvm.transform.module_pass(opt_level=0)
    def no_tensorize(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        for gv, f in list(mod.functions_items()):
            if isinstance(f, tvm.tirx.PrimFunc):
                mod[gv] = f.with_attr("dlight.do_not_tensorize", True)
        return mod

    @tvm.transform.module_pass(opt_level=0)
    def pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential(
                P.library_dispatch_passes(target)
                + [
                    relax.transform.LegalizeOps(),
                    relax.transform.AnnotateTIROpPattern(),
                    relax.transform.FoldConstant(),
                    relax.transform.FuseOps(),
                    relax.transform.FuseTIR(),
                    no_tensorize,
                    dl.ApplyDefaultSchedule(
                        dl.gpu.Matmul(),
                        dl.gpu.GEMV(),
                        dl.gpu.Reduction(),
                        dl.gpu.GeneralReduction(),
                        dl.gpu.Fallback(),
                    ),
                ]
                + dataflow_lower_passes(target)
                + P.finalize_passes(target)
            )(mod)

    return pipeline


def compile_module(
    mod: tvm.IRModule, spec: TargetSpec, stage: Callable[[str], None] | None = None
) -> relax.VMExecutable:
    """Build a Relax module for the target; for CUDA, fail unless every kernel is a GPU kernel.

    `stage(name)` hears when each of the two long steps starts (the Relax pipeline, then
    tvm.compile's TIR passes and code generation). The same module gives the same bytes
    every build (codegen/tvm/reproducible.py).
    """
    stage = stage or (lambda name: None)
    with spec.target:
        stage("Relax pipeline")
        if spec.device != "cuda":
            lowered = sort_shape_func_stores(relax.get_pipeline("default")(mod))
            stage("tvm.compile")
            return tvm.compile(lowered, target=spec.target, relax_pipeline=None)
        lowered = sort_shape_func_stores(_cuda_pipeline(spec.target)(mod))
        host_kernels = [
            gv.name_hint
            for gv, f in lowered.functions_items()
            if isinstance(f, tvm.tirx.PrimFunc) and not _runs_on_gpu(f)
        ]
        if host_kernels:
            raise CodegenError(
                f"kernels left unscheduled would run on the host: {', '.join(host_kernels)}",
                where=f"target tvm-cuda ({spec.cuda_arch})",
            )
        stage("tvm.compile")
        return tvm.compile(lowered, target=spec.target, relax_pipeline=None)


def _runs_on_gpu(func: tvm.tirx.PrimFunc) -> bool:
    """True for kernels bound to GPU threads and for the VM's own host-side shape functions."""
    if func.attrs is not None and "tirx.is_host_func" in func.attrs:
        return True
    text = func.script()
    return "T.thread_binding" in text or "T.launch_thread" in text


def cuda_sources(ex: relax.VMExecutable) -> str:
    """The CUDA C source of an executable's device module ('' when there is none)."""
    sources = []
    stack = list(ex.mod.imports)
    while stack:
        m = stack.pop()
        if m.kind == "cuda":
            sources.append(m.inspect_source())
        stack.extend(m.imports)
    return "\n".join(sources)


def check_cuda_kernels(
    ex: relax.VMExecutable, arch: str, nvcc: str | None = None
) -> dict[str, int]:
    """Compile the executable's CUDA source with nvcc for `arch`; returns {kernels, cubin_bytes}.

    Raises CodegenError when there is no CUDA module (kernels fell back to the host),
    when nvcc is missing, or when nvcc rejects the code.
    """
    source = cuda_sources(ex)
    kernels = source.count('extern "C" __global__')
    if not kernels:
        raise CodegenError(
            "the CUDA build holds no GPU kernel (unscheduled kernels fall back to the host)",
            where="target tvm-cuda",
        )
    nvcc = nvcc or shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not Path(nvcc).exists() and not shutil.which(nvcc):
        raise CodegenError(
            "nvcc not found; set PATH to include the CUDA toolkit", where="target tvm-cuda"
        )
    cc = arch.removeprefix("sm_")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "kernels.cu", Path(tmp) / "kernels.cubin"
        src.write_text(source)
        proc = subprocess.run(
            [
                nvcc,
                "--cubin",
                "-O3",
                f"-gencode=arch=compute_{cc},code=sm_{cc}",
                "-o",
                str(out),
                str(src),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise CodegenError(
                f"nvcc rejected the generated CUDA code: {proc.stderr.strip()[-2000:]}",
                where=f"target tvm-cuda ({arch})",
            )
        return {"kernels": kernels, "cubin_bytes": out.stat().st_size}


def aarch64_compiler() -> tuple[str, list[str]]:
    """(cross C++ compiler, extra options) for tvm-aarch64 links, from the environment or PATH."""
    cxx = os.environ.get(CXX_ENV) or shutil.which(f"{AARCH64_TRIPLE}-g++")
    if not cxx:
        raise CodegenError(
            f"no aarch64 cross compiler: set ${CXX_ENV} or install one "
            "(apt-get install -y gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user; "
            "see codegen/tvm/runner/setup.sh)",
            where="target tvm-aarch64",
        )
    sysroot = os.environ.get(SYSROOT_ENV)
    return cxx, [f"--sysroot={sysroot}"] if sysroot else []


def export(ex: relax.VMExecutable, spec: TargetSpec, path: Path) -> None:
    """Write the executable as a shared library (cross-linked for aarch64)."""
    if spec.name == "tvm-aarch64":
        from tvm.support import cc

        cxx, options = aarch64_compiler()
        ex.export_library(str(path), fcompile=cc.cross_compiler(cxx, options=options))
    else:
        ex.export_library(str(path))
