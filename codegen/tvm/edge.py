"""Drive the native aarch64 runner (runner/irgraph_runner.cc) from Python: build it, run it.

On an x86 machine the runner runs under `qemu-aarch64` with the Debian arm64
sysroot (`-L /usr/aarch64-linux-gnu`); on a board it runs directly. This is the
path edge devices take: no Python, only libtvm_runtime.so and libtvm_ffi.so.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from irgraph.artifact import read_manifest
from irgraph.errors import RuntimeFailure

RUNNER_DIR = Path(__file__).parent / "runner"
SETUP = RUNNER_DIR / "setup.sh"
QEMU_SYSROOT = "/usr/aarch64-linux-gnu"


def build_runner(out: str | os.PathLike[str] | None = None) -> Path:
    """Run runner/setup.sh (toolchain, aarch64 TVM runtime, build); returns the runner's path."""
    env = dict(os.environ, PYTHON=sys.executable)
    args = ["bash", str(SETUP)] + ([str(out)] if out is not None else [])
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeFailure(
            f"runner setup failed: {proc.stderr.strip()[-2000:]}", where=str(SETUP)
        )
    return Path(proc.stdout.strip().splitlines()[-1])


def run_native(
    runner: str | os.PathLike[str],
    artifact: str | os.PathLike[str],
    prompt: list[int],
    steps: int,
) -> tuple[list[int], np.ndarray]:
    """(generated tokens, float32 logits [positions fed, vocab]) from the native runner.

    Encoder-decoders: the prompt is the encoder's input; logits are the decoder's positions
    (decoder_start_token_id, then all but the last generated token).

    Uses qemu-aarch64 unless this machine is aarch64 itself.
    """
    command = [
        str(runner),
        str(artifact),
        "--prompt",
        ",".join(map(str, prompt)),
        "--steps",
        str(steps),
    ]
    if platform.machine() not in ("aarch64", "arm64"):
        qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
        if qemu is None:
            raise RuntimeFailure("qemu-aarch64 not found (apt-get install -y qemu-user)")
        command = [qemu, "-L", os.environ.get("IRGRAPH_QEMU_SYSROOT", QEMU_SYSROOT)] + command
    with tempfile.TemporaryDirectory() as tmp:
        logits_file = Path(tmp) / "logits.f32"
        proc = subprocess.run(
            command + ["--logits", str(logits_file)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeFailure(
                f"native runner failed: {proc.stderr.strip()[-2000:]}", where=str(artifact)
            )
        tokens = [int(t) for t in proc.stdout.split()]
        logits = np.fromfile(logits_file, dtype=np.float32)
    encdec = any(e["name"] == "decoder_input_ids" for e in read_manifest(artifact)["inputs"])
    positions = (
        len(tokens) if encdec else len(prompt) + len(tokens) - 1
    )  # the decoder's positions fed
    return tokens, logits.reshape(positions, -1)
