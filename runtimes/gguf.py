"""GGUF artifacts as a runtime session on llama.cpp, through llama-cpp-python's C API.

    session = irgraph.runtimes.open("out/llama-gguf")
    session.forward([[1, 2, 3]])                 # logits [batch, seq, vocab]
    session.generate([[1, 2, 3]], 16)

llama.cpp keeps the KV cache inside its context, so this session drives it itself: each row
of a batch is one llama.cpp sequence, decoded one row after another (no padding: rows of
different lengths are generated in separate lanes, `left_padding = False`). The cache is
f32 (`type_k` / `type_v` F32) and flash attention is off, so the numbers are llama.cpp's
plain f32 attention path. `run(feeds)` takes prefill feeds (an empty past) only: a GGUF
session has no KV tensors to hand in or out.

llama-cpp-python is the `irgraph[llama]` extra; without it opening a GGUF artifact is one
DeviceUnavailable line naming it (the artifact is sound; this machine lacks its runtime).
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from irgraph import lm
from irgraph.artifact import open_artifact
from irgraph.errors import DeviceUnavailable, RuntimeFailure
from irgraph.feeds import bounds_from_manifest
from irgraph.runtimes.base import Session
from irgraph.types import TensorType, parse_type

MAX_CONTEXT = 4096  # positions per sequence a context holds (the model's own limit if lower)
_LOG: Any = None  # the no-op log callback, kept alive while llama.cpp holds it


def _llama() -> Any:
    """The llama_cpp module, its backend initialised and its log silenced (library code)."""
    global _LOG
    try:
        import llama_cpp
    except ImportError:
        raise DeviceUnavailable(
            "GGUF artifacts run on llama.cpp: pip install 'irgraph[llama]' "
            "(llama-cpp-python is not installed)"
        ) from None
    if _LOG is None:
        _LOG = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(_LOG, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


def _type(entry: Mapping[str, Any]) -> TensorType:
    return parse_type(f"{entry['dtype']}[{', '.join(map(str, entry['shape']))}]")


def _check_gguf(manifest: dict[str, Any], folder: Path) -> None:
    if manifest.get("target") != "gguf" or not isinstance(manifest.get("gguf"), dict):
        raise RuntimeFailure(
            "not a GGUF artifact", expected="gguf", got=manifest.get("target"), where=str(folder)
        )


def threads() -> int:
    """llama.cpp threads: IRGRAPH_LLAMA_THREADS, else this machine's cores."""
    return int(os.environ.get("IRGRAPH_LLAMA_THREADS", "0")) or os.cpu_count() or 1


class _Context:
    """One llama.cpp context: `rows` sequences of up to `per_row` positions, f32 KV cache."""

    def __init__(self, session: GGUFSession, rows: int, per_row: int):
        llama = session.llama
        self.llama, self.session = llama, session
        params = llama.llama_context_default_params()
        per_row = max(32, per_row)
        params.n_ctx = rows * per_row
        params.n_batch = params.n_ubatch = per_row
        params.n_seq_max = rows
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = threads()
        params.type_k = params.type_v = llama.GGML_TYPE_F32
        params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        ctx = llama.llama_init_from_model(session.model, params)
        if not ctx:
            raise RuntimeFailure(
                f"llama.cpp cannot make a context for {rows} rows of {per_row} positions",
                where=session.where,
            )
        self.ctx, self.per_row = ctx, per_row
        self.lengths = [0] * rows
        self.batch = llama.llama_batch_init(per_row, 0, 1)

    def __del__(self) -> None:
        if getattr(self, "ctx", None):
            self.llama.llama_batch_free(self.batch)
            self.llama.llama_free(self.ctx)
            self.ctx = None

    def eval(self, row: int, tokens: np.ndarray, all_logits: bool) -> np.ndarray:
        """Logits [n or 1, vocab] after feeding `tokens` to sequence `row` (positions go on)."""
        n, start = len(tokens), self.lengths[row]
        if start + n > self.per_row:
            raise RuntimeFailure(
                f"row {row} would hold {start + n} positions; this context holds {self.per_row}",
                where=self.session.where,
            )
        b = self.batch
        for i, token in enumerate(tokens):
            b.token[i] = int(token)
            b.pos[i] = start + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = row
            b.logits[i] = 1 if all_logits or i == n - 1 else 0
        b.n_tokens = n
        rc = self.llama.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeFailure(f"llama_decode failed (code {rc})", where=self.session.where)
        self.lengths[row] += n
        vocab = self.session.vocab
        picks = range(n) if all_logits else [n - 1]
        return np.stack(
            [
                np.ctypeslib.as_array(self.llama.llama_get_logits_ith(self.ctx, i), (vocab,))
                for i in picks
            ]
        ).astype(np.float32, copy=True)


class GGUFSession(Session):
    """A GGUF artifact loaded into llama.cpp (see the module docstring)."""

    left_padding = False

    def __init__(self, folder: str | os.PathLike[str], *, verify: bool = True):
        self.llama = llama = _llama()
        self.folder = Path(folder)
        self.where = str(self.folder)
        check = functools.partial(_check_gguf, folder=self.folder)
        with open_artifact(self.folder, verify=verify, check=check) as files:
            self.manifest = manifest = files.manifest
            self.inputs = {e["name"]: _type(e) for e in manifest["inputs"]}
            self.meta = dict(manifest.get("meta") or {})
            self.bounds = bounds_from_manifest(manifest)
            path = files.path(manifest["gguf"].get("model"), "gguf.model")
            params = llama.llama_model_default_params()
            params.use_mmap = False  # read in while the verified copy exists
            model = llama.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise RuntimeFailure(
                "llama.cpp cannot load model.gguf (an architecture or tensor it does not know?)",
                where=str(self.folder / str(manifest["gguf"].get("model"))),
            )
        self.model = model
        self.vocab = int(llama.llama_vocab_n_tokens(llama.llama_model_get_vocab(model)))
        context = int(manifest["gguf"].get("context_length") or MAX_CONTEXT)
        self.max_positions = min(context, MAX_CONTEXT)

    def __del__(self) -> None:
        if getattr(self, "model", None):
            self.llama.llama_model_free(self.model)
            self.model = None

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's token ids for `text` from the file's own vocabulary (no BOS added)."""
        llama = self.llama
        vocab = llama.llama_model_get_vocab(self.model)
        data = text.encode("utf-8")
        room = len(data) + 8
        out = (llama.llama_token * room)()
        n = llama.llama_tokenize(vocab, data, len(data), out, room, False, False)
        if n < 0:
            raise RuntimeFailure("llama.cpp could not tokenize the text", where=self.where)
        return list(out[:n])

    def _check_unpadded(self, feeds: Mapping[str, Any]) -> None:
        mask = feeds.get("attention_mask")
        if mask is not None and not np.all(np.asarray(mask) == 1):
            raise RuntimeFailure(
                "llama.cpp sequences take no padding (generate runs prompts of different "
                "lengths separately)",
                expected="attention_mask of 1s",
                where=self.where,
            )

    def forward(self, ids: Any, *, decode: bool = False, **kw: Any) -> np.ndarray:
        """Logits [batch, seq, vocab]: each row in one call, or token by token (`decode`)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim == 1:
            ids = ids[None]
        mask = kw.pop("mask", None)
        others = [k for k, v in kw.items() if v is not None]
        if others:
            raise RuntimeFailure(f"a GGUF session takes no {', '.join(others)}", where=self.where)
        feeds = lm.make_feeds(self.inputs, ids, lm.empty_cache(self.inputs, len(ids)), past_len=0)
        if mask is not None:
            feeds["attention_mask"] = np.asarray(mask)
        self.check(feeds)
        self._check_unpadded(feeds)
        context = _Context(self, len(ids), ids.shape[1])
        if not decode:
            return np.stack([context.eval(r, row, all_logits=True) for r, row in enumerate(ids)])
        out = np.empty((*ids.shape, self.vocab), dtype=np.float32)
        for t in range(ids.shape[1]):
            for r in range(len(ids)):
                out[r, t] = context.eval(r, ids[r, t : t + 1], all_logits=False)[0]
        return out

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if any(np.asarray(feeds[p]).size for p in lm.cache_inputs(self.inputs)):
            raise RuntimeFailure(
                "a GGUF session keeps its KV cache inside llama.cpp: run() takes prefill feeds "
                "(an empty past); use forward(decode=True) or generate for cached steps",
                where=self.where,
            )
        self._check_unpadded(feeds)
        return {lm.LOGITS: self.forward(np.asarray(feeds["input_ids"]))}

    def _step(self, feeds: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """One generation step: the new tokens of every row through its llama.cpp sequence."""
        self._check_unpadded(feeds)
        ids = np.asarray(feeds["input_ids"])
        caches = [feeds[p] for p in lm.cache_inputs(self.inputs)]
        context = next((c for c in caches if isinstance(c, _Context)), None)
        if context is None:
            context = _Context(self, len(ids), self.max_positions)
        logits = np.stack([context.eval(r, row, all_logits=False) for r, row in enumerate(ids)])
        return logits, dict.fromkeys(lm.cache_inputs(self.inputs), context)


__all__ = ["GGUFSession", "threads"]
