"""irgraph tvm-cuda artifacts on a GPU vs the numpy interpreter's logits (prefill + cached decode).

Self-contained: needs only the TVM runtime (runtime-only wheel, no libtvm_compiler.so) and numpy
(+ ml_dtypes for bf16/f16 weights); the project's codegen is not imported.
usage: python gpu_check.py --art DIR --out results.json [--device cuda|cpu] [--only a,b]
                           [--budget S]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")
os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")  # no torch import, no JIT addon build

NP = {
    "f32": np.float32,
    "f16": np.float16,
    "f64": np.float64,
    "i64": np.int64,
    "i32": np.int32,
    "i8": np.int8,
    "u8": np.uint8,
    "bool": np.bool_,
}
ST = {
    "F32": "f32",
    "F16": "f16",
    "F64": "f64",
    "I64": "i64",
    "I32": "i32",
    "I8": "i8",
    "U8": "u8",
    "BOOL": "bool",
    "BF16": "bf16",
}


def np_dtype(name):
    if name == "bf16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return NP[name]


def load_safetensors(path):
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(
            raw[8 + n + a : 8 + n + b], dtype=np_dtype(ST[e["dtype"]])
        ).reshape(e["shape"])
    return out


def pack_weight(array, layout):  # as irgraph.runtimes.tvm.pack_weight
    if layout == "plain":
        return np.ascontiguousarray(array)
    nb = int(layout.removeprefix("packed"))
    n, k = array.shape
    return np.ascontiguousarray(np.asarray(array).reshape(n // nb, nb, k).transpose(0, 2, 1))


def setup_tvm(device):
    import tvm
    from tvm.base import _LOADED_LIBS
    from tvm_ffi.libinfo import load_lib_ctypes

    libdir = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
    names = ["tvm_runtime_extra"] + (["tvm_runtime_cuda"] if device == "cuda" else [])
    for name in names:  # runtime-only mode skips the backend autoload that loads these
        if name not in _LOADED_LIBS:
            try:
                _LOADED_LIBS[name] = load_lib_ctypes(
                    package="tvm", target_name=name, extra_lib_paths=[libdir], mode="RTLD_LOCAL"
                )
            except Exception as e:  # noqa: BLE001
                print(f"  could not load {name}: {e}", flush=True)
                if name == "tvm_runtime_cuda":
                    raise
    if device == "cuda":
        os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")
        try:  # only needed for artifacts that still carry CUDA source (JIT at load)
            import tvm.support.nvcc  # noqa: F401
        except Exception as e:  # noqa: BLE001
            print(
                f"  tvm.support.nvcc unavailable ({e}); source-only artifacts cannot load",
                flush=True,
            )
        dev = tvm.cuda(0)
        if not dev.exist:
            raise SystemExit("no CUDA device visible to TVM")
        print(
            f"TVM {tvm.__version__} runtime_only={tvm._RUNTIME_ONLY} device={dev.device_name} "
            f"cc={dev.compute_version}",
            flush=True,
        )
    else:
        dev = tvm.cpu()
        print(f"TVM {tvm.__version__} runtime_only={tvm._RUNTIME_ONLY} device=cpu", flush=True)
    return tvm, dev


# ---- the LM feeding protocol (a copy of irgraph.lm.make_feeds/forward) ----
def make_feeds(inputs, ids, cache, past_len, enc_ids=None):
    batch, seq = ids.shape
    mask = np.ones((batch, past_len + seq), dtype=np.int64)
    positions = (np.cumsum(mask, axis=1) - 1).clip(min=0)[:, past_len:]
    feeds = dict(cache)
    encdec = "decoder_input_ids" in inputs
    feeds["decoder_input_ids" if encdec else "input_ids"] = ids
    opt = {"position_ids": positions.astype(np.int64), "attention_mask": mask}
    if "prefix_len" in inputs:
        opt["prefix_len"] = np.full((batch,), past_len + seq, dtype=np.int64)
    if encdec:
        opt["input_ids"] = enc_ids
        em = np.ones(enc_ids.shape, dtype=np.int64)
        opt["encoder_attention_mask"] = em
        opt["encoder_position_ids"] = (np.cumsum(em, axis=1) - 1).clip(min=0).astype(np.int64)
    for k, v in opt.items():
        if k in inputs:
            feeds[k] = v
    return feeds


def empty_cache(inputs, batch):
    return {
        n: np.zeros(
            [batch if d == "batch" else (d if isinstance(d, int) else 0) for d in shape],
            dtype=np_dtype(dt),
        )
        for n, (dt, shape) in inputs.items()
        if n.startswith("past_key_values.")
    }


def present(n):
    return "present." + n[len("past_key_values.") :]


class Model:
    def __init__(self, tvm, dev, folder):
        from tvm.runtime.vm import VirtualMachine

        self.tvm, self.dev, self.folder = tvm, dev, Path(folder)
        m = self.manifest = json.loads((self.folder / "manifest.json").read_text())
        info = m["tvm"]
        self.inputs = {e["name"]: (e["dtype"], e["shape"]) for e in m["inputs"]}
        self.outputs = [e["name"] for e in m["outputs"]]
        t0 = time.perf_counter()
        self.lib = tvm.runtime.load_module(str(self.folder / info["library"]))
        self.vm = VirtualMachine(self.lib, dev)
        self.f = self.vm[info["function"]]
        self.f_last = self.vm[info["function_last"]] if info.get("function_last") else self.f
        store = load_safetensors(self.folder / info["weights"])
        self.weights = [
            tvm.runtime.tensor(pack_weight(store[a["name"]], a["layout"]), dev)
            for a in info["weight_args"]
        ]
        self.load_s = time.perf_counter() - t0

    def call(self, feeds, last=False):
        args = []
        for name, (dt, _shape) in self.inputs.items():
            v = feeds[name]
            if not isinstance(v, self.tvm.runtime.Tensor):
                v = self.tvm.runtime.tensor(np.ascontiguousarray(v, dtype=np_dtype(dt)), self.dev)
            args.append(v)
        res = (self.f_last if last else self.f)(*args, *self.weights)
        return {n: res[i] for i, n in enumerate(self.outputs)}

    def forward(self, ids, decode, enc_ids=None):
        cache = empty_cache(self.inputs, ids.shape[0])
        if not decode:
            return self.call(make_feeds(self.inputs, ids, cache, 0, enc_ids))["logits"].numpy()
        first = ids.shape[1] if "prefix_len" in self.inputs else 1
        bounds = [0, *range(first, ids.shape[1] + 1)]
        rows = []
        for lo, hi in zip(bounds, bounds[1:]):
            out = self.call(make_feeds(self.inputs, ids[:, lo:hi], cache, lo, enc_ids))
            rows.append(out["logits"].numpy())
            cache = {n: out[present(n)] for n in cache}  # stays on the device
        return np.concatenate(rows, axis=1)

    def time_decode(self, prompt, steps, enc_ids=None):
        """ms per greedy decode token, batch 1, cache kept on the device (forward_last)."""
        ids = prompt[:1]
        cache = empty_cache(self.inputs, 1)
        enc = None if enc_ids is None else enc_ids[:1]
        out = self.call(make_feeds(self.inputs, ids, cache, 0, enc), last=True)
        past = ids.shape[1]
        times = []
        for _ in range(steps):
            tok = int(out["logits"].numpy()[0, -1].argmax())
            cache = {n: out[present(n)] for n in cache}
            t0 = time.perf_counter()
            out = self.call(
                make_feeds(self.inputs, np.array([[tok]], np.int64), cache, past, enc), last=True
            )
            out["logits"].numpy()  # sync
            times.append(time.perf_counter() - t0)
            past += 1
        return 1000 * float(np.median(times[2:] if len(times) > 4 else times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--art", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--only", default="")
    ap.add_argument("--budget", type=float, default=200.0, help="seconds; skip the rest after this")
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    t_start = time.perf_counter()
    results = {"device": a.device, "models": {}}
    out_path = Path(a.out)

    def save():
        results["wall_s"] = round(time.perf_counter() - t_start, 1)
        out_path.write_text(json.dumps(results, indent=1))

    try:
        tvm, dev = setup_tvm(a.device)
        results["tvm"] = tvm.__version__
        results["gpu"] = dev.device_name if a.device == "cuda" else "cpu"
    except BaseException as e:  # noqa: BLE001
        results["setup_error"] = "".join(traceback.format_exception_only(type(e), e)).strip()
        print("SETUP FAILED:", results["setup_error"], flush=True)
        traceback.print_exc()
        save()
        return 2
    art = Path(a.art)
    order = (art / "order.txt").read_text().split() if (art / "order.txt").exists() else []
    names = [n for n in order if (art / n).is_dir()] + sorted(
        p.name for p in art.iterdir() if p.is_dir() and p.name not in order
    )
    if a.only:
        names = [n for n in names if n in a.only.split(",")]
    n_ok = 0
    for i, name in enumerate(names):
        if time.perf_counter() - t_start > a.budget:
            results["models"][name] = {"status": "skipped (time budget)"}
            continue
        r = results["models"][name] = {"status": "error"}
        t0 = time.perf_counter()
        try:
            ref = np.load(art / name / "ref.npz")
            ids = ref["ids"]
            enc = ref["enc_ids"] if "enc_ids" in ref.files else None
            model = Model(tvm, dev, art / name)
            r["load_s"] = round(model.load_s, 3)
            pre = model.forward(ids, False, enc)
            r["prefill_err"] = float(np.abs(pre - ref["prefill"]).max())
            dec = model.forward(ids, True, enc)
            r["decode_err"] = float(np.abs(dec - ref["decode"]).max())
            r["ref_scale"] = float(np.abs(ref["prefill"]).max())
            r["argmax_match"] = bool(
                (pre.argmax(-1) == ref["prefill"].argmax(-1)).all()
                and (dec.argmax(-1) == ref["decode"].argmax(-1)).all()
            )
            r["decode_ms_per_token"] = round(model.time_decode(ids, a.decode_steps, enc), 4)
            ok = r["prefill_err"] <= a.tol * max(1.0, r["ref_scale"]) and r[
                "decode_err"
            ] <= a.tol * max(1.0, r["ref_scale"])
            r["status"] = "ok" if ok else "MISMATCH"
            n_ok += ok
            del model
        except BaseException as e:  # noqa: BLE001  (a failing model must not stop the rest)
            if isinstance(e, KeyboardInterrupt):
                raise
            r["error"] = "".join(traceback.format_exception_only(type(e), e)).strip()[-1500:]
        r["seconds"] = round(time.perf_counter() - t0, 2)
        print(
            f"[{i + 1}/{len(names)}] {name:18s} {r['status']:9s} "
            f"prefill_err={r.get('prefill_err', '-'):<10.3g} "
            if "prefill_err" in r
            else f"[{i + 1}/{len(names)}] {name:18s} {r['status']:9s} ",
            end="",
            flush=True,
        )
        if "prefill_err" in r:
            print(
                f"decode_err={r.get('decode_err', float('nan')):<10.3g} "
                f"decode_ms/tok={r.get('decode_ms_per_token', float('nan'))} ({r['seconds']}s)",
                flush=True,
            )
        else:
            print(r.get("error", "")[:600], flush=True)
        save()
    results["summary"] = {"ok": n_ok, "total": len(names)}
    save()
    print(f"SUMMARY {n_ok}/{len(names)} ok in {results['wall_s']}s -> {out_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
