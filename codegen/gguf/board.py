"""GGUF artifacts on aarch64: llama.cpp cross-built from the pinned sdist, run under qemu here.

    runner = build_runner(sdist)                          # cached; minutes on 2 cores
    logits = run_logits(runner, "out/llama-gguf/model.gguf", [1, 2, 3], decode=True)

`edge/build.sh` cross-compiles the llama.cpp vendored in llama-cpp-python's sdist (the same
source the x86 wheel is built from) for generic armv8-a as static libraries and links
`edge/gguf_runner.c` against them: a board runs the same binary directly. On x86 it runs under
`qemu-aarch64` with the Debian arm64 sysroot, as the TVM runner does (`codegen/tvm/edge.py`).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np

from irgraph.errors import DeviceUnavailable, RuntimeFailure

EDGE = Path(__file__).with_name("edge")
QEMU_SYSROOT = "/usr/aarch64-linux-gnu"
CACHE = Path(os.environ.get("IRGRAPH_CACHE", Path.home() / ".cache" / "irgraph")) / "gguf-aarch64"


def build_runner(sdist: str | os.PathLike[str], cache: Path = CACHE) -> Path:
    """The aarch64 gguf_runner built from `sdist` (llama-cpp-python's), cached by sdist name."""
    out = cache / Path(sdist).name.removesuffix(".tar.gz")
    runner = out / "gguf_runner"
    if runner.is_file():
        return runner
    for tool in ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++", "cmake"):
        if shutil.which(tool) is None:
            raise DeviceUnavailable(f"cross-building llama.cpp for aarch64 needs {tool}")
    try:
        subprocess.run(
            ["sh", str(EDGE / "build.sh"), str(sdist), str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as e:
        raise RuntimeFailure(
            f"the aarch64 llama.cpp build failed: {(e.stderr or e.stdout).strip()[-400:]}",
            where=str(out),
        ) from None
    return runner


def _command(runner: Path) -> list[str]:
    if platform.machine() in ("aarch64", "arm64"):
        return [str(runner)]
    if shutil.which("qemu-aarch64") is None:
        raise DeviceUnavailable("running the aarch64 runner here needs qemu-aarch64")
    return ["qemu-aarch64", "-L", QEMU_SYSROOT, str(runner)]


def run_logits(
    runner: Path, model: str | os.PathLike[str], ids: list[int], *, decode: bool, vocab: int
) -> np.ndarray:
    """Logits [len(ids), vocab] of `model` on the aarch64 runner (prefill or token by token)."""
    mode = "decode" if decode else "prefill"
    done = subprocess.run(
        [*_command(runner), str(model), mode, *map(str, ids)], capture_output=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeFailure(
            f"the aarch64 runner failed: {done.stderr.decode(errors='replace').strip()[-300:]}",
            where=str(model),
        )
    return np.frombuffer(done.stdout, dtype="<f4").reshape(len(ids), vocab)


__all__ = ["build_runner", "run_logits"]
