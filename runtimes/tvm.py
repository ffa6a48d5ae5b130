"""TVM artifacts as a runtime session: the Relax VM runs `forward`, weights packed once at load.

    session = irgraph.runtimes.open("out/llama-tvm")   # manifest target tvm-llvm or tvm-cuda
    logits = session.forward([[1, 2, 3]], decode=True)

`run(feeds)` takes and returns the graph's own names (KV cache included), so
`forward` and `generate` come from `Session` unchanged. aarch64 artifacts run
on the board through the native runner (codegen/tvm/runner), not here.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from irgraph import artifact as shared
from irgraph import lm
from irgraph.backends import backend
from irgraph.dtypes import DType
from irgraph.errors import DeviceUnavailable, RuntimeFailure
from irgraph.feeds import bounds_from_manifest
from irgraph.lm import LOGITS, LOGITS_LAST
from irgraph.runtimes.base import Session
from irgraph.types import TensorType, parse_type
from irgraph.weights import WeightStore


def pack_weight(array: np.ndarray, layout: str) -> np.ndarray:
    """A weight in the layout its `forward` argument wants.

    "plain" is the array as stored; "packed{nb}" regroups [N, K] as [N/nb, K, nb].
    """
    if layout == "plain":
        return np.ascontiguousarray(array)
    if layout == "vnni16":
        return vnni16(array)
    nb = int(layout.removeprefix("packed"))
    n, k = array.shape
    return np.ascontiguousarray(
        np.asarray(array).reshape(n // nb, nb, k).transpose(0, 2, 1)
    )  # (N/nb, K, nb)


def vnni16(data: np.ndarray) -> np.ndarray:
    """i4 data (u8 [N, K/2], value 2c in the low nibble of byte c) as `vnni_kernels` reads it:
    i32 [N/16, K/8, 16], lane j of word c holding q + 8 of row 16·no + j for k = 8c..8c+7,
    byte t: k = 8c + t low, 8c + 4 + t high."""
    b = np.asarray(data, dtype=np.uint8)
    n, half = b.shape
    u = np.empty((n, 2 * half), np.uint8)
    u[:, 0::2], u[:, 1::2] = (b & 15) ^ 8, (b >> 4) ^ 8  # signed nibble + 8 = nibble XOR 8
    u = u.reshape(n // 16, 16, half // 4, 2, 4)  # (block, lane, word, low/high, byte)
    words = (u[:, :, :, 0, :] | (u[:, :, :, 1, :] << 4)).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(words).view(np.int32).reshape(n // 16, half // 4, 16)


def read_manifest(folder: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """The checked manifest of a TVM artifact: the shared checks plus target and TVM release."""
    return _check_tvm(shared.read_manifest(folder, verify=verify), Path(folder))


def _check_tvm(manifest: dict[str, Any], folder: Path) -> dict[str, Any]:
    import tvm

    where = str(folder / shared.MANIFEST)
    targets = backend("tvm").targets
    if manifest.get("target") not in targets or "tvm" not in manifest:
        raise RuntimeFailure(
            "not a TVM artifact",
            expected=" | ".join(targets),
            got=manifest.get("target"),
            where=where,
        )
    built = manifest.get("tools", {}).get("apache-tvm") or ""
    if (
        built.split(".")[:2] != tvm.__version__.split(".")[:2]
    ):  # the VM bytecode format is per release
        raise RuntimeFailure(
            "artifact was built with another TVM release",
            expected=tvm.__version__,
            got=built,
            where=where,
        )
    return manifest


def _type(entry: Mapping[str, Any]) -> TensorType:
    return parse_type(f"{entry['dtype']}[{', '.join(map(str, entry['shape']))}]")


class TVMSession(Session):
    """A compiled TVM artifact loaded into the Relax VM on the CPU or a CUDA GPU."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        verify: bool = True,
        weights: Mapping[str, np.ndarray] | None = None,
        threads: int | None = None,
    ):
        """Load the artifact at `folder`.

        `weights` (name -> array, e.g. another checkpoint of the same
        architecture) replaces the artifact's own weights: the library takes them as arguments.

        `threads` sets TVM's CPU thread pool size (TVM_NUM_THREADS); TVM reads it when its pool
        starts, i.e. before the first kernel runs in this process.
        """
        if threads is not None:
            os.environ["TVM_NUM_THREADS"] = str(threads)
        self.folder = Path(folder)
        check = functools.partial(_check_tvm, folder=self.folder)
        with shared.open_artifact(self.folder, verify=verify, check=check) as files:
            self.manifest = files.manifest
            self._load(files, weights)

    def _load(self, files: shared.Artifact, weights: Mapping[str, np.ndarray] | None) -> None:
        """Load the library and weights from the verified copy `files`."""
        import tvm
        from tvm import relax

        manifest = self.manifest
        info = manifest["tvm"]
        library_path = files.path(info.get("library"), "tvm.library")  # both named before either
        weights_path = files.path(info.get("weights"), "tvm.weights")  # loads
        if manifest["target"] == "tvm-aarch64":
            raise DeviceUnavailable(
                "tvm-aarch64 artifacts run on the board with codegen/tvm/runner",
                where=str(self.folder),
            )
        self.inputs = {e["name"]: _type(e) for e in manifest["inputs"]}
        self.output_names = [e["name"] for e in manifest["outputs"] if e["name"] != LOGITS_LAST]
        self.meta = dict(manifest.get("meta") or {})
        self.bounds = bounds_from_manifest(manifest)
        self.where = str(self.folder)
        if info["device"] == "cuda":
            import tvm.support.nvcc  # noqa: F401  (registers the compiler that builds the CUDA source at load)

            self.device = tvm.cuda(0)
            if not self.device.exist:
                raise DeviceUnavailable(
                    "this artifact needs a CUDA GPU", expected=info["needs"], where=str(self.folder)
                )
        else:
            self.device = tvm.cpu()
        try:
            library = tvm.runtime.load_module(str(library_path))
        except Exception as e:  # TVM's loader errors name no file
            raise RuntimeFailure(
                f"cannot load the library: {str(e).splitlines()[0]}",
                expected=info["needs"],
                where=str(self.folder),
            ) from None
        self.vm = relax.VirtualMachine(library, self.device)
        self.function = self.vm[info["function"]]
        # logits for the last position only, what generate needs (older artifacts lack it)
        self.function_last = (
            self.vm[info["function_last"]] if info.get("function_last") else self.function
        )
        self.outputs_last = info.get("outputs_last") or self.output_names
        weights_file = self.folder / weights_path.name
        store: Mapping[str, Any] = WeightStore.open(weights_path) if weights is None else weights
        self.weights = []
        for arg in info["weight_args"]:
            if arg["name"] not in store:
                raise RuntimeFailure(f"weight {arg['name']!r} missing", where=str(weights_file))
            array = pack_weight(np.asarray(store[arg["name"]]), arg["layout"])
            if list(array.shape) != list(arg["shape"]):
                raise RuntimeFailure(
                    f"weight {arg['name']!r} has the wrong shape",
                    expected=arg["shape"],
                    got=list(array.shape),
                    where=str(weights_file),
                )
            want = DType.parse(arg["dtype"]).numpy
            if array.dtype != want:  # tvm.runtime.tensor would pass other bytes on unchanged
                raise RuntimeFailure(
                    f"weight {arg['name']!r} has the wrong dtype",
                    expected=str(arg["dtype"]),
                    got=str(array.dtype),
                    where=str(weights_file),
                )
            self.weights.append(tvm.runtime.tensor(array, self.device))

    def _call(self, feeds: Mapping[str, Any], *, last_only: bool = False) -> dict[str, Any]:
        """Outputs as TVM tensors on the device; feeds may be numpy arrays or TVM tensors.

        `last_only` runs `forward_last` where the artifact has it: logits [batch, 1, vocab].
        """
        import tvm

        args = []
        for name, t in self.inputs.items():
            value = feeds[name]
            if not isinstance(value, tvm.runtime.Tensor):  # shapes checked by `Session.check`
                value = np.ascontiguousarray(np.asarray(value), dtype=t.dtype.numpy)
                value = tvm.runtime.tensor(value, self.device)
            args.append(value)
        try:
            result = (self.function_last if last_only else self.function)(*args, *self.weights)
        except Exception as e:  # the VM's shape checks: symbolic dims that disagree between inputs
            raise RuntimeFailure(
                f"the TVM VM rejected the inputs: {str(e).splitlines()[0][:400]}",
                where=str(self.folder),
            ) from None
        names = self.outputs_last if last_only else self.output_names
        return {name: result[i] for i, name in enumerate(names)}

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: value.numpy() for name, value in self._call(feeds).items()}

    def _step(self, feeds: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """One call keeping the cache on the device: (logits, present.* as TVM tensors).

        The returned cache is keyed by past name; the logits are numpy.

        The logits are the last position's only ([batch, 1, vocab]) where the artifact has
        `forward_last`: generation samples from nothing else.
        """
        out = self._call(feeds, last_only=True)
        cache = {past: out[lm.present_name(past)] for past in lm.cache_inputs(self.inputs)}
        return out[LOGITS_LAST if LOGITS_LAST in out else LOGITS].numpy(), cache
