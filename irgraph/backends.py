"""The backend table: one row per backend, read by `irgraph compile`, its `--help` and
`irgraph.runtimes.open`, so adding a backend is one folder under `codegen/` (plus its
session under `runtimes/`) and one row here.

Why in the core, with "module:attr" strings: the table is read from both sides of the
layering (core <- passes <- codegen; core <- runtimes; the CLI above all). `compile` lives
in codegen and the session classes in runtimes, and runtimes must never import codegen,
so the one place both can read without an upward import is the core. The core in turn
imports nothing above it, so a row names its compile function, session class, artifact
reader and lowering table as "module:attr" strings (the plugin pattern, as in entry
points), imported by `load` only when used: listing targets or printing `--help` imports
no backend, and opening an ONNX artifact never imports TVM.

Every compile function takes `(graph, out, *, target, force, extra_files, progress, passes,
default_passes, **options)` with the options its row declares, and returns the artifact
folder; `progress(done, total, what)` (irgraph.progress) hears of its long steps; `passes`
records the pipelines that made the graph in the manifest, and `default_passes=True` (the
Python API's default) runs the row's default pipeline first.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from irgraph.errors import ConfigError


@dataclass(frozen=True)
class CompileOption:
    """One backend-specific compile option: keyword `name`, shown by the CLI as `--name`."""

    name: str
    choices: tuple[str, ...]
    default: str
    help: str
    targets: tuple[str, ...] = ()  # the targets it applies to; () = all of its backend's

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Backend:
    """One backend: the targets it compiles for and where its parts live ("module:attr")."""

    name: str
    targets: tuple[str, ...]
    help: str  # one line for `irgraph compile --help`
    lowerings: str  # its `LoweringTable`
    compile: str = ""  # compile function; "" = produces no artifact (torch: a module)
    session: str = ""  # `Session` subclass opening its artifacts (constructor takes the folder)
    reader: str = ""  # `read_manifest(folder, *, verify=True)`: the manifest, checked for it
    options: tuple[CompileOption, ...] = ()
    # `default_pipeline(options) -> str`: the passes `compile` runs after --passes, given the
    # compile options (the ONNX flavours differ); "" = none
    default_passes: str = ""

    def option(self, name: str) -> CompileOption:
        """The compile option called `name` (ConfigError naming the backend's options otherwise)."""
        for option in self.options:
            if option.name == name:
                return option
        raise ConfigError(
            f"backend {self.name!r} has no compile option {name!r}",
            expected=", ".join(o.name for o in self.options) or "none",
            got=name,
        )

    def applies(self, option: str, target: str) -> bool:
        """Whether compile option `option` means anything for `target` (one of this backend's)."""
        return any(o.name == option and target in (o.targets or self.targets) for o in self.options)

    def default_pipeline(self, options: Mapping[str, str]) -> str:
        """The pipeline text `irgraph compile` runs after the user's passes ("" for none)."""
        return load(self.default_passes)(options) if self.default_passes else ""

    def load(self, part: str) -> Any:
        """The object named by field `part` ("compile", "session", "reader", "lowerings")."""
        ref = getattr(self, part)
        if not ref:
            raise ConfigError(
                f"backend {self.name!r} has no {part}", expected="a backend that has one"
            )
        return load(ref)


def load(ref: str) -> Any:
    """Import "package.module:attr" and return the attribute."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


BACKENDS: tuple[Backend, ...] = (
    Backend(
        name="onnx",
        targets=("onnx",),
        help="ONNX model + external weights for ONNX Runtime (and onnxruntime-genai)",
        lowerings="irgraph.codegen.onnx.lowerings:LOWERINGS",
        compile="irgraph.codegen.onnx:compile_graph",
        default_passes="irgraph.codegen.onnx:default_pipeline",
        session="irgraph.runtimes.onnx:ORTSession",
        reader="irgraph.artifact:read_manifest",
        options=(
            CompileOption(
                "flavour",
                ("ort", "portable"),
                "ort",
                "ONNX Runtime contrib ops (ort) or standard ONNX only (portable).",
            ),
            CompileOption(
                "dtype",
                ("f32", "f16", "bf16"),
                "f32",
                "compute precision of weights and activations.",
            ),
            CompileOption(
                "accuracy_level",
                ("1", "4"),
                "1",
                "quantized linears' MatMulNBits compute (ort flavour): 1 = fp32, the "
                "interpreter's numbers; 4 = activations quantized per block to int8 (faster, "
                "approximate).",
            ),
        ),
    ),
    Backend(
        name="tvm",
        targets=("tvm-llvm", "tvm-cuda", "tvm-aarch64"),
        help="Apache TVM Relax library + weights (host CPU, CUDA GPU, aarch64 board)",
        lowerings="irgraph.codegen.tvm.lowering:LOWERINGS",
        compile="irgraph.codegen.tvm.artifact:compile_graph",
        default_passes="irgraph.codegen.tvm.artifact:default_pipeline",
        session="irgraph.runtimes.tvm:TVMSession",
        reader="irgraph.runtimes.tvm:read_manifest",
        options=(
            CompileOption(
                "cuda_arch",
                ("sm_80", "sm_86", "sm_89", "sm_90"),
                "sm_80",
                "GPU architecture the kernels are built and nvcc-checked for (tvm-cuda).",
                targets=("tvm-cuda",),
            ),
            CompileOption(
                "activations",
                ("f32", "int8"),
                "f32",
                "int4 linears (symmetric, groups of 32k): f32 = the interpreter's numbers; "
                "int8 = activations quantized per 32 values to int8, AVX-512 VNNI dot products "
                "(faster, approximate, as llama.cpp's q4_0).",
                targets=("tvm-llvm",),
            ),
        ),
    ),
    Backend(
        name="gguf",
        targets=("gguf",),
        help="model.gguf for llama.cpp (laptops, phones, boards; llama-cpp-python runs it)",
        lowerings="irgraph.codegen.gguf.lowerings:LOWERINGS",
        compile="irgraph.codegen.gguf:compile_graph",
        default_passes="irgraph.codegen.gguf:default_pipeline",
        session="irgraph.runtimes.gguf:GGUFSession",
        reader="irgraph.artifact:read_manifest",
        options=(
            CompileOption(
                "dtype",
                ("f32", "f16", "bf16"),
                "f32",
                "compute precision of weights and activations.",
            ),
            CompileOption(
                "requantize",
                (
                    "none",
                    *("q8_0", "q4_0", "q4_1", "q5_0", "q5_1"),
                    *("q2_k", "q3_k_m", "q4_k_s", "q4_k_m", "q5_k_m", "q6_k"),
                    *("llama-q4_0", "llama-q8_0"),
                ),
                "none",
                "quantize every weight matrix to this GGML type (quantized graphs whose form "
                "GGML lacks need it); k-quants and llama-q4_0 / llama-q8_0 (llama.cpp's own "
                "mix: output.weight at q6_K / q8_0) use llama.cpp's quantizer.",
            ),
        ),
    ),
    Backend(
        name="torch",
        targets=("torch",),
        help="a trainable torch.nn.Module (irgraph train, torch.export); no artifact",
        lowerings="irgraph.codegen.torch.lowerings:LOWERINGS",
    ),
)


def backend(name: str) -> Backend:
    """The backend row called `name` ("onnx", "tvm", "gguf", "torch")."""
    for row in BACKENDS:
        if row.name == name:
            return row
    raise ConfigError(
        f"unknown backend {name!r}", expected=" | ".join(b.name for b in BACKENDS), got=name
    )


def backend_for(target: str) -> Backend:
    """The backend row that has `target` (ConfigError naming every known target otherwise)."""
    for backend in BACKENDS:
        if target in backend.targets:
            return backend
    raise ConfigError(
        f"unknown target {target!r}",
        expected=" | ".join(t for b in BACKENDS for t in b.targets),
        got=target,
    )


def compile_targets() -> list[str]:
    """Every target some backend compiles an artifact for, in table order."""
    return [t for b in BACKENDS if b.compile for t in b.targets]


def compile_options() -> list[CompileOption]:
    """Every backend's compile options once each; one defined differently by two is an error."""
    seen: dict[str, CompileOption] = {}
    for backend in BACKENDS:
        for option in backend.options:
            other = seen.setdefault(option.name, option)
            if (other.choices, other.default) != (option.choices, option.default):
                raise ConfigError(
                    f"compile option {option.name!r} is defined twice, differently",
                    expected=f"{other.choices} default {other.default}",
                    got=f"{option.choices} default {option.default} ({backend.name})",
                )
    return list(seen.values())


__all__ = [
    "BACKENDS",
    "Backend",
    "CompileOption",
    "backend",
    "backend_for",
    "compile_options",
    "compile_targets",
    "load",
]
