"""ONNX artifacts as a runtime session on ONNX Runtime (CUDA first, else CPU).

    session = irgraph.runtimes.open("out/llama-onnx")
    session.generate([[1, 2, 3]], max_new_tokens=16)

`run(feeds)` takes and returns the graph's own names; the cached decode loop
of `generate` keeps the KV cache as ORT values between steps (`step`), so the
cache is never copied into numpy and back. Artifacts built with
last-position-logits carry `model_last.onnx` (logits for the last position
only, weights in the same data file): `step` runs it, so a prompt's prefill
skips the LM head for every other position.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from irgraph import lm
from irgraph.artifact import Artifact, open_artifact
from irgraph.dtypes import DType
from irgraph.errors import RuntimeFailure
from irgraph.feeds import bounds_from_manifest
from irgraph.lm import LOGITS, LOGITS_LAST
from irgraph.runtimes.base import Session
from irgraph.types import TensorType, parse_type


def _type(entry: Mapping[str, Any]) -> TensorType:
    return parse_type(f"{entry['dtype']}[{', '.join(map(str, entry['shape']))}]")


def _check_onnx(manifest: dict[str, Any], folder: Path) -> None:
    if manifest.get("target") != "onnx" or not isinstance(manifest.get("onnx"), dict):
        raise RuntimeFailure(
            "not an ONNX artifact", expected="onnx", got=manifest.get("target"), where=str(folder)
        )


def check_external_data(model: Path, files: Artifact) -> None:
    """Every external-data file the ONNX model at `model` names is a file the artifact lists.

    Checked before onnxruntime opens the model, which would otherwise read any path a
    tensor's `location` gives (relative to the model, or absolute).
    """
    import onnx

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as e:  # a protobuf DecodeError names nothing
        raise RuntimeFailure(
            f"not an ONNX model: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
            where=str(files.folder / model.name),
        ) from None
    for tensor in _tensors(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location")
            files.path(location, f"{model.name}: tensor {tensor.name!r} external data location")


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto in an ONNX graph: initializers and attributes, subgraphs included."""
    yield from graph.initializer
    yield from (s.values for s in graph.sparse_initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sub in [attribute.g] if attribute.HasField("g") else []:
                yield from _tensors(sub)
            for sub in attribute.graphs:
                yield from _tensors(sub)


def session_options(threads: int | None = None) -> Any:
    """ORT options: full graph optimisation, explicit intra-op threads (docs/onnxruntime.md §3)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is None:
        threads = int(os.environ.get("IRGRAPH_ORT_THREADS", "0")) or None
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


class ORTSession(Session):
    """An ONNX artifact loaded into onnxruntime."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        verify: bool = True,
        threads: int | None = None,
        providers: list[str] | None = None,
    ):
        import onnxruntime as ort

        self.folder = Path(folder)
        check = functools.partial(_check_onnx, folder=self.folder)
        with open_artifact(self.folder, verify=verify, check=check) as files:
            self.manifest = manifest = files.manifest
            self.inputs = {e["name"]: _type(e) for e in manifest["inputs"]}
            self.output_names = [e["name"] for e in manifest["outputs"] if e["name"] != LOGITS_LAST]
            self.meta = dict(manifest.get("meta") or {})
            self.bounds = bounds_from_manifest(manifest)
            self.where = str(self.folder)
            self.left_padding = bool(manifest.get("left_padding", True))
            self.share_buffer = (
                bool(manifest["onnx"].get("share_buffer")) and "attention_mask" in self.inputs
            )
            available = ort.get_available_providers()
            if providers is None:
                providers = [
                    p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
                ]

            onnx_info = manifest["onnx"]
            last, encoder = onnx_info.get("model_last"), onnx_info.get("encoder") or None
            models = {"onnx.model": onnx_info.get("model")}
            if last is not None:
                models["onnx.model_last"] = last
            if encoder is not None:
                models["onnx.encoder.model"] = (
                    encoder.get("model") if isinstance(encoder, dict) else encoder
                )
            paths = {key: files.path(name, key) for key, name in models.items()}
            for path in paths.values():  # every name checked before anything loads
                check_external_data(path, files)

            def load(key: str) -> Any:
                try:
                    return ort.InferenceSession(
                        str(paths[key]), sess_options=session_options(threads), providers=providers
                    )
                except Exception as e:  # ORT's load errors are long: the first line, the file
                    raise RuntimeFailure(
                        f"onnxruntime cannot load the model: {str(e).splitlines()[0]}",
                        where=str(self.folder / models[key]),
                    ) from None

            self.session = load("onnx.model")
            # generation steps: logits_last [batch, 1, vocab] where the artifact has it
            self.step_session = load("onnx.model_last") if last is not None else self.session
            self.step_logits = LOGITS_LAST if last is not None else LOGITS
            self.encoder = load("onnx.encoder.model") if encoder is not None else None
        self._encoder_io = (encoder["inputs"], encoder["outputs"]) if encoder else ((), ())
        self._encoded: tuple[Any, dict[str, np.ndarray]] | None = None
        self.providers = self.session.get_providers()
        self._ort_inputs = {i.name: i.type for i in self.session.get_inputs()}
        self._ort_outputs = {o.name: o.type for o in self.session.get_outputs()}
        self._presents = {past: lm.present_name(past) for past in lm.cache_inputs(self.inputs)}
        self._float = np.float16 if manifest["onnx"]["dtype"] == "f16" else np.float32

    @contextmanager
    def _ort_errors(self) -> Iterator[None]:
        """ORT's failures at run time as one RuntimeFailure line naming the artifact.

        `Session.check` refuses bad feeds first; this is for what only ORT finds.
        """
        try:
            yield
        except Exception as e:  # ORT raises its own pybind exception types, with long messages
            raise RuntimeFailure(
                f"onnxruntime failed: {str(e).splitlines()[0][:400]}", where=str(self.folder)
            ) from None

    def _check_padding(self, feeds: Mapping[str, Any]) -> None:
        if not self.left_padding and "attention_mask" in feeds:
            mask = np.asarray(feeds["attention_mask"])
            if (
                np.diff(mask.astype(np.int8), axis=1) > 0
            ).any():  # a 0 before a 1: left or inner padding
                raise RuntimeFailure(
                    "this artifact's GroupQueryAttention takes right padding only (generate "
                    "steps prompts of different lengths separately)",
                    expected="attention_mask rows of 1s then 0s",
                    where=str(self.folder),
                )

    def _decoder_feeds(self, feeds: Mapping[str, Any]) -> Mapping[str, Any]:
        """Encoder-decoder artifacts: the decoder's feeds (the encoder runs once per prompt)."""
        if self.encoder is None:
            return feeds
        names, outputs = self._encoder_io
        key = tuple((n, np.asarray(feeds[n]).shape, np.asarray(feeds[n]).tobytes()) for n in names)
        if self._encoded is None or self._encoded[0] != key:
            with self._ort_errors():
                results = self.encoder.run(
                    list(outputs), {n: self._feed(n, np.asarray(feeds[n])) for n in names}
                )
            self._encoded = (key, dict(zip(outputs, results)))
        return {**{n: v for n, v in feeds.items() if n in self._ort_inputs}, **self._encoded[1]}

    def _feed(self, name: str, value: Any) -> Any:
        if not isinstance(value, np.ndarray):
            return value  # an OrtValue from the previous step
        if name not in self.inputs:
            return value  # an encoder output, already in the model's dtype
        t = self.inputs[name]
        dtype = self._float if t.dtype.is_float else t.dtype.numpy
        if self._ort_inputs.get(name) == "tensor(bfloat16)":
            import ml_dtypes

            dtype = ml_dtypes.bfloat16
        if self._ort_inputs.get(name) == F8:  # numpy has no float8: ORT takes its bytes
            import onnxruntime as ort

            raw = np.ascontiguousarray(value, dtype=dtype).view(np.uint8)
            return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, F8_ONNX)
        return np.ascontiguousarray(value, dtype=dtype)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_padding(feeds)
        arrays = {n: self._feed(n, np.asarray(v)) for n, v in self._decoder_feeds(feeds).items()}
        with self._ort_errors():
            results = self.session.run(self.output_names, arrays)
        return {n: self._output(n, r) for n, r in zip(self.output_names, results)}

    def _output(self, name: str, array: np.ndarray) -> np.ndarray:
        """An output as the graph types it: float8 from ORT's bytes, f16/bf16 widened to f32."""
        if self._ort_outputs.get(name) == F8:
            return array.view(DType.f8e4m3.numpy)
        return _to_f32(array)

    def _step(self, feeds: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """One call keeping the cache on the device: (logits, present.* as OrtValues).

        The returned cache is keyed by past name; the logits are numpy.

        Artifacts whose attention is all GroupQueryAttention (manifest `share_buffer`) keep one
        [batch, kv_heads, capacity, head_dim] buffer per cache tensor, bound as both past and
        present through IO binding, as onnxruntime-genai does: no cache copy per step.
        """
        import onnxruntime as ort

        self._check_padding(feeds)
        if self.share_buffer:
            return self._shared_step(feeds)
        feeds = self._decoder_feeds(feeds)
        values = {
            n: v if isinstance(v, ort.OrtValue) else self._feed(n, v) for n, v in feeds.items()
        }
        values = {
            n: v if isinstance(v, ort.OrtValue) else ort.OrtValue.ortvalue_from_numpy(v)
            for n, v in values.items()
        }
        names = [self.step_logits, *self._presents.values()]
        with self._ort_errors():
            results = self.step_session.run_with_ort_values(names, values)
        out = dict(zip(names, results))
        cache = {past: out[present] for past, present in self._presents.items()}
        return _to_f32(out[self.step_logits].numpy()), cache

    def _shared_step(self, feeds: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:

        total = np.asarray(feeds["attention_mask"]).shape[1]
        past = total - np.asarray(feeds["input_ids"]).shape[1]
        shared = next(iter(feeds[p] for p in self._presents))
        if not isinstance(shared, _SharedKV) or total > shared.capacity:
            shared = _SharedKV.grow(shared, feeds, self._presents, past, total, self._float)
            shared.binding = self.step_session.io_binding()  # past/present bound once per buffer
            shared.binding.bind_output(self.step_logits)  # first, so it is output 0
            for past_name, present in self._presents.items():
                shared.binding.bind_ortvalue_input(past_name, shared.buffers[past_name])
                shared.binding.bind_ortvalue_output(present, shared.buffers[past_name])
        binding = shared.binding
        for name, value in feeds.items():  # rebinding a name replaces it
            if name not in self._presents:
                binding.bind_cpu_input(name, self._feed(name, np.asarray(value)))
        binding.bind_output(self.step_logits)
        with self._ort_errors():
            self.step_session.run_with_iobinding(binding)
        logits = binding.get_outputs()[0].numpy()
        return _to_f32(logits), dict.fromkeys(self._presents, shared)


class _SharedKV:
    """One cache buffer per past input, [batch, kv_heads, capacity, head_dim], grown by doubling."""

    def __init__(self, buffers: dict[str, Any], capacity: int):
        self.buffers, self.capacity = buffers, capacity
        self.binding: Any = None

    @staticmethod
    def grow(
        old: Any,
        feeds: Mapping[str, Any],
        presents: Mapping[str, str],
        past: int,
        total: int,
        dtype: Any,
    ) -> _SharedKV:
        import onnxruntime as ort

        capacity = max(256, 1 << (total - 1).bit_length())
        buffers = {}
        for name in presents:
            current = (
                old.buffers[name].numpy() if isinstance(old, _SharedKV) else np.asarray(feeds[name])
            )
            b, n, _, h = current.shape
            array = np.zeros((b, n, capacity, h), dtype=dtype)
            array[:, :, :past] = current[:, :, :past]
            buffers[name] = ort.OrtValue.ortvalue_from_numpy(array)
        return _SharedKV(buffers, capacity)


F8 = "tensor(float8e4m3fn)"  # a quantized KV cache's ORT type (quantize-kv dtype=fp8_e4m3)
F8_ONNX = 17  # TensorProto.FLOAT8E4M3FN


def _to_f32(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.float32 or array.dtype.kind in "iub":
        return array
    return array.astype(np.float32)  # f16 / bf16 outputs
