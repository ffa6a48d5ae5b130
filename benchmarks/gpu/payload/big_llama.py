"""Decode timing of a ~125M LLaMA: irgraph tvm-cuda vs HF transformers eager, same weights.

The fp32 weights (~500 MB) are not carried: this regenerates benchmarks/decode.py's random-weight
checkpoint (its own make_checkpoint: torch.manual_seed(0) + LlamaForCausalLM(config)), checks a few
tensors against sha256 hashes taken where the artifact was built, derives the artifact's
weights.safetensors with irgraph's own importer (import_hf -> graph.params, exactly what
`irgraph compile` writes), then times batch 1, prompt 128 + 128 greedy new tokens, both systems.
usage: python big_llama.py --art DIR(model.so, manifest.json, hashes.json) --out results.json
       [--device cuda|cpu] [--tokens 128] [--repeats 3] [--work /tmp/big]
Results go into the "llama125m" key of --out (merged with what is there).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.abc
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# the importer's source as of the commit the artifact was built from (carried), else the repo's tree
REPO = Path(
    os.environ.get("IRGRAPH_REPO")
    or (HERE / "irgraph_src" if (HERE / "irgraph_src").is_dir() else HERE.parent)
).resolve()
HASHED = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.5.mlp.down_proj.weight",
    "model.layers.11.self_attn.k_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
]


def irgraph_path():
    """Import irgraph from the repo's working tree (its package-dir layout)."""
    if "irgraph" in sys.modules:
        return
    m = {
        "irgraph": "irgraph",
        "irgraph.codegen": "codegen",
        "irgraph.model_zoo": "model_zoo",
        "irgraph.passes": "passes",
        "irgraph.runtimes": "runtimes",
    }

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in m:
                d = REPO / m[name]
                return importlib.util.spec_from_file_location(
                    name, d / "__init__.py", submodule_search_locations=[str(d)]
                )
            return None

    sys.meta_path.insert(0, Finder())


def raw_tensors(path):
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    return {
        k: (e, raw[8 + n + e["data_offsets"][0] : 8 + n + e["data_offsets"][1]])
        for k, e in header.items()
        if k != "__metadata__"
    }


def sha(b):
    return hashlib.sha256(b).hexdigest()


def hashes(path, names=None):
    t = raw_tensors(path)
    return {k: sha(t[k][1]) for k in (names or sorted(t))}


def make_checkpoint(work):
    sys.path.insert(0, str(REPO))
    from benchmarks.decode import FULL  # the benchmark's own code and seed
    from benchmarks.decode import make_checkpoint as mk

    try:
        return mk(Path(work) / "hf", FULL), FULL
    except (
        ImportError
    ) as e:  # no `tokenizers` here: its model part alone (the tokenizer comes after)
        print(f"  make_checkpoint failed ({e}); model part only", flush=True)
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        config = LlamaConfig(
            **FULL,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        folder = Path(work) / "hf"
        LlamaForCausalLM(config).eval().save_pretrained(folder, safe_serialization=True)
        return folder, FULL


def derive_weights(hf_dir, manifest, out_path):
    """The artifact's weights.safetensors from the checkpoint, as codegen/tvm/artifact.py does."""
    irgraph_path()
    from irgraph.model_zoo.hf_import import import_hf
    from irgraph.weights import save_safetensors

    graph = import_hf(hf_dir)
    save_safetensors({name: np.asarray(graph.weight(name)) for name in graph.params}, out_path)
    # the names, dtypes and (plain) shapes the library was built for
    t = raw_tensors(out_path)
    problems = []
    for a in manifest["tvm"]["weight_args"]:
        if a["name"] not in t:
            problems.append(f"missing {a['name']}")
            continue
        e = t[a["name"]][0]
        if a["layout"] == "plain" and list(e["shape"]) != list(a["shape"]):
            problems.append(f"{a['name']}: shape {e['shape']} != {a['shape']}")
        if int(np.prod(e["shape"])) != int(np.prod(a["shape"])):
            problems.append(f"{a['name']}: size {e['shape']} != {a['shape']}")
    return graph, problems


def run_irgraph(gc, tvm, dev, art, prompt, new_tokens, repeats):
    model = gc.Model(tvm, dev, art)
    inputs = model.inputs

    def once():
        cache = gc.empty_cache(inputs, 1)
        ids = np.array([prompt], np.int64)
        t0 = time.perf_counter()
        out = model.call(gc.make_feeds(inputs, ids, cache, 0), last=True)
        logits0 = out["logits"].numpy()[0, -1]
        tok = int(logits0.argmax())
        t_pre = time.perf_counter() - t0
        toks, times, past = [tok], [], len(prompt)
        for _ in range(new_tokens - 1):
            cache = {n: out[gc.present(n)] for n in cache}
            t1 = time.perf_counter()
            out = model.call(
                gc.make_feeds(inputs, np.array([[tok]], np.int64), cache, past), last=True
            )
            tok = int(out["logits"].numpy()[0, -1].argmax())  # syncs
            times.append(time.perf_counter() - t1)
            toks.append(tok)
            past += 1
        return t_pre, times, toks, logits0

    once()  # warm-up
    runs = [once() for _ in range(repeats)]
    return model.load_s, runs


def run_hf(hf_dir, device, prompt, new_tokens, repeats):
    import torch
    from transformers import LlamaForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t0 = time.perf_counter()
    model = (
        LlamaForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32)
        .to(device)
        .eval()
    )
    load_s = time.perf_counter() - t0
    ids = torch.tensor([prompt], device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    @torch.inference_mode()
    def once():
        sync()
        t0 = time.perf_counter()
        out = model(ids, use_cache=True)
        logits0 = out.logits[0, -1].float().cpu().numpy()
        token = out.logits[:, -1:].argmax(-1)
        toks = [int(token)]
        t_pre = time.perf_counter() - t0
        cache, times = out.past_key_values, []
        for _ in range(new_tokens - 1):
            t1 = time.perf_counter()
            out = model(token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            toks.append(int(token))  # syncs
            times.append(time.perf_counter() - t1)
        return t_pre, times, toks, logits0

    once()
    runs = [once() for _ in range(repeats)]
    return (
        load_s,
        runs,
        {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    )


def summary(runs, n_prompt):
    pre = statistics.median(r[0] for r in runs)
    dec = [t for r in runs for t in r[1]]
    return {
        "prefill_tok_s": round(n_prompt / pre, 1),
        "prefill_ms": round(1000 * pre, 3),
        "decode_ms_per_token_median": round(1000 * statistics.median(dec), 4),
        "decode_ms_per_token_mean": round(1000 * float(np.mean(dec)), 4),
        "decode_tok_s": round(1 / statistics.median(dec), 1),
        "decode_ms_per_run": [round(1000 * sum(r[1]), 2) for r in runs],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--art", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default="/tmp/big")
    ap.add_argument("--phase", default="all", choices=["all", "prep", "tvm", "hf"])
    ap.add_argument("--skip-hf", action="store_true")
    a = ap.parse_args()
    if a.phase == "all":  # each phase in its own process: torch and the TVM runtime never share one
        t0 = time.perf_counter()
        rc = 0
        for ph in ["prep", "tvm"] + ([] if a.skip_hf else ["hf"]):
            rc = subprocess.call([sys.executable, __file__, *sys.argv[1:], "--phase", ph])
            if rc:
                break
        res = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else {}
        res.setdefault("llama125m", {})["wall_s"] = round(time.perf_counter() - t0, 1)
        Path(a.out).write_text(json.dumps(res, indent=1))
        return rc
    t_start = time.perf_counter()
    out_path = Path(a.out)
    allres = json.loads(out_path.read_text()) if out_path.exists() else {}
    r = allres.setdefault("llama125m", {})
    r["status"] = f"error in {a.phase}"
    work = Path(a.work)
    art = work / "art"

    def save():
        r[f"{a.phase}_wall_s"] = round(time.perf_counter() - t_start, 1)
        out_path.write_text(json.dumps(allres, indent=1))

    def step(msg):
        print(f"[llama125m {a.phase} {time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)

    try:
        if a.phase == "prep":
            src = Path(a.art)
            manifest = json.loads((src / "manifest.json").read_text())
            want = json.loads((src / "hashes.json").read_text())
            if work.exists():
                shutil.rmtree(work)
            t0 = time.perf_counter()
            hf_dir, dims = make_checkpoint(work)
            r["dims"] = dims
            r["irgraph_source"] = str(REPO)
            r["checkpoint_s"] = round(time.perf_counter() - t0, 1)
            got = hashes(hf_dir / "model.safetensors", list(want["checkpoint"]))
            r["checkpoint_identical"] = got == want["checkpoint"]
            r["checkpoint_hash_mismatch"] = [k for k in got if got[k] != want["checkpoint"][k]]
            step(
                f"checkpoint regenerated in {r['checkpoint_s']}s; "
                f"{len(got) - len(r['checkpoint_hash_mismatch'])}/{len(got)} "
                "tensor hashes identical"
            )
            art.mkdir()
            for f in ("model.so", "manifest.json"):
                shutil.copyfile(src / f, art / f)
            t0 = time.perf_counter()
            _graph, problems = derive_weights(hf_dir, manifest, art / "weights.safetensors")
            r["derive_s"] = round(time.perf_counter() - t0, 1)
            r["derived_layout_problems"] = problems
            got = hashes(art / "weights.safetensors", list(want["derived"]))
            r["derived_identical"] = got == want["derived"]
            step(
                f"weights derived in {r['derive_s']}s; layout problems {problems or 'none'}; "
                f"derived hashes identical: {r['derived_identical']}"
            )
            if problems:
                raise RuntimeError(f"derived weights do not fit the artifact: {problems[:5]}")
            r["status"] = "prepared"
        else:
            dims = r["dims"]
            prompt = [
                int(x) for x in np.random.default_rng(0).integers(3, dims["vocab_size"], a.tokens)
            ]
            if a.phase == "tvm":
                sys.path.insert(0, str(HERE))
                import gpu_check as gc

                tvm, dev = gc.setup_tvm(a.device)
                load_s, runs = run_irgraph(gc, tvm, dev, art, prompt, a.tokens, a.repeats)
                r["irgraph_tvm"] = {"load_s": round(load_s, 2), **summary(runs, len(prompt))}
                r["irgraph_tokens_stable"] = all(x[2] == runs[-1][2] for x in runs)
                np.savez(work / "tvm_tokens.npz", tokens=np.array(runs[-1][2]), logits0=runs[-1][3])
                step(f"irgraph tvm-{a.device}: {r['irgraph_tvm']}")
                r["status"] = "tvm timed"
            else:
                load_s, hruns, ver = run_hf(work / "hf", a.device, prompt, a.tokens, a.repeats)
                r["hf_eager"] = {"load_s": round(load_s, 2), **ver, **summary(hruns, len(prompt))}
                step(f"hf eager {a.device}: {r['hf_eager']}")
                z = np.load(work / "tvm_tokens.npz")
                ti, th = [int(x) for x in z["tokens"]], hruns[-1][2]
                r["tokens_equal"] = ti == th
                r["tokens_same_prefix"] = next(
                    (i for i, (x, y) in enumerate(zip(ti, th)) if x != y), len(th)
                )
                r["first_logits_max_abs_diff"] = float(np.abs(z["logits0"] - hruns[-1][3]).max())
                r["first_logits_scale"] = float(np.abs(hruns[-1][3]).max())
                r["hf_tokens_stable"] = all(x[2] == th for x in hruns)
                r["decode_speedup_vs_hf"] = round(
                    r["hf_eager"]["decode_ms_per_token_median"]
                    / r["irgraph_tvm"]["decode_ms_per_token_median"],
                    2,
                )
                r["prefill_speedup_vs_hf"] = round(
                    r["irgraph_tvm"]["prefill_tok_s"] / r["hf_eager"]["prefill_tok_s"], 2
                )
                r["tokens_head"] = {"irgraph": ti[:16], "hf": th[:16]}
                r["status"] = "ok" if r["tokens_equal"] else "TOKENS DIFFER"
                step(
                    f"status {r['status']}; tokens equal {r['tokens_equal']} (same prefix "
                    f"{r['tokens_same_prefix']}/{len(th)}); first-logits diff "
                    f"{r['first_logits_max_abs_diff']:.3g} (scale {r['first_logits_scale']:.3g}); "
                    f"decode speedup {r['decode_speedup_vs_hf']}x, "
                    f"prefill {r['prefill_speedup_vs_hf']}x"
                )
    except BaseException as e:  # noqa: BLE001
        r["error"] = (
            f"{a.phase}: " + "".join(traceback.format_exception_only(type(e), e)).strip()[-1500:]
        )
        traceback.print_exc()
        print("LLAMA125M FAILED:", r["error"], flush=True)
        save()
        return 1
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
