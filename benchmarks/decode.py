"""Prefill and decode speed of irgraph's ONNX artifact against its peers, on one LLaMA checkpoint.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decode.py [--quick]
        [--only irgraph-onnx,genai-fp32] [--threads 1] [--repeats 3] [--work DIR] [--plot]

The script makes the checkpoint itself (once, cached under --work): a
Hugging Face LlamaForCausalLM with random weights, ~125M parameters (12 layers,
hidden 768, 12 heads / 4 KV heads, FFN 2048, vocab 32000) and a `tokenizers`
BPE, saved with save_pretrained (genai's own build of it is cached too; irgraph's
artifacts are compiled anew each run, so they are always this code's). `--quick`
uses a 4-layer, hidden-256 model and 32 + 32 tokens for a smoke run. Then, batch 1, greedy,
prompt 128 + 128 new
tokens, each system in this one process:

  irgraph-onnx   import-hf -> codegen onnx (ort flavour, f32) -> irgraph.runtimes (ORT CPU)
  irgraph-tvm    import-hf -> codegen tvm (tvm-llvm: packed-weight linear kernels)
                 -> irgraph.runtimes (Relax VM)
  hf-eager       transformers LlamaForCausalLM, eager attention, its KV cache (DynamicCache)
  genai-fp32     onnxruntime-genai's builder output (-p fp32 -e cpu) driven by og.Generator
  roofline       bytes of weights streamed per token / bandwidth of a large numpy GEMV
  irgraph-{onnx,tvm}-w8a8   quantize(method=w8a8): int8 weights per channel, int8 tokens
  irgraph-{onnx,tvm}-int4[-g128] | -int8   the graph through quantize(bits=4, group=32 | 128)
                 or quantize(bits=8, group=0) (RTN; LM head 8 bits, embedding table quantized
                 too), then as above: ONNX MatMulNBits + GatherBlockQuantized (accuracy_level 1;
                 irgraph-onnx-int4-al4: 4, int8 activations; -h4: the LM head 4 bits too),
                 TVM fused dequantize-linear kernels
  genai-int4     onnxruntime-genai's -p int4 build
  roofline-int4  the int4-g32 row's stored bytes (scales, 8-bit head; no table) / bandwidth

Every system is set up and warmed up first, then measured in --repeats
interleaved rounds (so load from other processes hits all alike); the table
shows each system's median prefill and decode tokens/s and the decode ratios
against genai-fp32 and the roofline, and decode tokens per CPU-second (the
process's CPU time, which time slices lost to other processes do not inflate).
Every
system uses --threads intra-op threads (docs/onnxruntime.md §3: on these
2-vCPU machines one thread beats two). More systems plug in through
`SYSTEMS` (name -> setup(bench) -> a callable returning one (prefill_tps,
decode_tps) measurement), e.g. a TVM row:

    from benchmarks.decode import SYSTEMS, Bench
    SYSTEMS["irgraph-tvm"] = lambda bench: bench.session_run(TVMSession(...))

Results also go to benchmarks/results/decode.json; `--plot` draws them beside it as
decode.png (tok/s per system with each row's roofline: benchmarks/plots.py, needs
matplotlib, `irgraph[plot]`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
FULL = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_key_value_heads": 4,
    "intermediate_size": 2048,
    "vocab_size": 32000,
}
QUICK = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "intermediate_size": 704,
    "vocab_size": 32000,
}


Run = Callable[
    [], tuple
]  # one measurement: (prefill tok/s, decode tok/s[, greedy tokens, decode tok/CPU-s])


@dataclass
class Bench:
    hf_dir: Path
    work: Path
    prompt: list[int]
    new_tokens: int
    threads: int
    repeats: int

    def session_run(self, session) -> Run:
        """One measurement of an irgraph runtime session through its own generate loop."""

        def once() -> tuple[float, float]:
            stamps: list[tuple[float, float]] = []
            start = time.perf_counter()
            tokens = session.generate(
                [self.prompt],
                self.new_tokens,
                callback=lambda i, t: stamps.append(stamp()),
            )[0]
            return measured(len(self.prompt), start, stamps, tokens)

        return once


def stamp() -> tuple[float, float]:
    """(wall clock, process CPU time) when a token arrives."""
    return time.perf_counter(), time.process_time()


def measured(prompt: int, start: float, stamps: list[tuple[float, float]], tokens: list) -> tuple:
    """(prefill tok/s, decode tok/s, tokens, decode tok/CPU-s) from each token's `stamp()`; the
    first token ends the prefill."""
    steps = len(stamps) - 1
    return (
        prompt / (stamps[0][0] - start),
        steps / (stamps[-1][0] - stamps[0][0]),
        tokens,
        steps / (stamps[-1][1] - stamps[0][1]),
    )


def make_checkpoint(folder: Path, dims: dict) -> Path:
    """A random-weight LLaMA checkpoint with a BPE tokenizer (made once)."""
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = LlamaConfig(
        **dims,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    corpus = [
        f"the quick brown fox {i} jumps over the lazy dog number {i * 7}" for i in range(2000)
    ]
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(vocab_size=1000, special_tokens=["<pad>", "<s>", "</s>", "<unk>"]),
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    ).save_pretrained(folder)
    return folder


# -- systems --------------------------------------------------------------------------------


def irgraph_onnx(bench: Bench) -> Run:
    from irgraph.codegen.onnx import compile_graph
    from irgraph.runtimes.onnx import ORTSession

    art = bench.work / "irgraph-onnx"  # rebuilt every run: the artifact is what this code makes now
    compile_graph(load_graph(bench.hf_dir), art, flavour="ort", dtype="f32", force=True)
    return bench.session_run(
        ORTSession(art, threads=bench.threads, providers=["CPUExecutionProvider"])
    )


def irgraph_tvm(bench: Bench) -> Run:
    from irgraph.codegen.tvm.artifact import compile_graph
    from irgraph.runtimes.tvm import TVMSession

    art = bench.work / "irgraph-tvm-llvm"  # rebuilt every run, like irgraph-onnx
    compile_graph(load_graph(bench.hf_dir), art, target="tvm-llvm", force=True)
    return bench.session_run(TVMSession(art, threads=bench.threads))


def quantized_graph(bench: Bench, scheme: str):
    """The checkpoint quantized by RTN: scheme "int4-g32" | "int4-g128" | "int8" (per channel),
    with "-h4" the LM head at 4 bits too (head_bits=4, as genai's int4 build); "w8a8": int8
    weights per channel and int8 activations per token (quantize(method=w8a8)).

    The pass keeps the LM head at 8 bits by default and quantizes the embedding table like the
    rest.
    """
    from irgraph.passes import run_pipeline

    if scheme == "w8a8":
        return run_pipeline(load_graph(bench.hf_dir), "quantize(method=w8a8)").graph
    scheme, h4, _ = scheme.partition("-h4")
    bits, _, group = scheme.removeprefix("int").partition("-g")
    head = ", head_bits=4" if h4 else ""
    pipeline = f"quantize(bits={bits}, group={group or 0}{head})"
    return run_pipeline(load_graph(bench.hf_dir), pipeline).graph


def irgraph_onnx_quantized(bench: Bench, scheme: str, accuracy_level: int = 1) -> Run:
    from irgraph.codegen.onnx import compile_graph
    from irgraph.runtimes.onnx import ORTSession

    art = bench.work / f"irgraph-onnx-{scheme}-al{accuracy_level}"
    graph = quantized_graph(bench, scheme)
    compile_graph(graph, art, flavour="ort", dtype="f32", force=True, accuracy_level=accuracy_level)
    return bench.session_run(
        ORTSession(art, threads=bench.threads, providers=["CPUExecutionProvider"])
    )


def irgraph_tvm_quantized(bench: Bench, scheme: str, activations: str = "f32") -> Run:
    """`activations="int8"`: int4 linears on the AVX-512 VNNI int4 x int8 kernels."""
    from irgraph.codegen.tvm.artifact import compile_graph
    from irgraph.runtimes.tvm import TVMSession

    art = bench.work / f"irgraph-tvm-llvm-{scheme}-{activations}"
    graph = quantized_graph(bench, scheme)
    compile_graph(graph, art, target="tvm-llvm", activations=activations, force=True)
    return bench.session_run(TVMSession(art, threads=bench.threads))


def quantized_roofline(bench: Bench, scheme: str) -> Run:
    """Decode bound of a quantized row: its stored bytes (scales, zero points and the 8-bit LM
    head included, embedding table excluded) / the bandwidth of a large GEMV."""
    graph = quantized_graph(bench, scheme)
    tables = {n.inputs[1].param for n in graph.nodes if n.op == "embedding"}
    streamed = sum(v.type.nbytes() for name, v in graph.params.items() if name not in tables)
    return lambda: (float("nan"), stream_bandwidth() / streamed)


def load_graph(hf_dir: Path):
    """The checkpoint as an irgraph graph (weights memory-mapped)."""
    from irgraph.model_zoo.hf_import import import_hf

    return import_hf(hf_dir)


def hf_eager(bench: Bench) -> Run:
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(bench.threads)
    model = LlamaForCausalLM.from_pretrained(bench.hf_dir, attn_implementation="eager").eval()
    ids = torch.tensor([bench.prompt])

    @torch.inference_mode()
    def once() -> tuple[float, float]:
        start = time.perf_counter()
        out = model(ids, use_cache=True)
        token = out.logits[:, -1:].argmax(-1)
        prefilled, cpu = time.perf_counter(), time.process_time()
        cache, tokens = out.past_key_values, [int(token)]
        for _ in range(bench.new_tokens - 1):
            out = model(token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            tokens.append(int(token))
        end, cpu_end = time.perf_counter(), time.process_time()
        steps = bench.new_tokens - 1
        return (
            len(bench.prompt) / (prefilled - start),
            steps / (end - prefilled),
            tokens,
            steps / (cpu_end - cpu),
        )

    return once


def genai_fp32(bench: Bench, precision: str = "fp32") -> Run:
    """onnxruntime-genai's own build (-p fp32 | int4, -e cpu) driven by og.Generator."""
    import onnxruntime_genai as og

    out = bench.work / f"genai-{precision}"
    if not (out / "genai_config.json").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "onnxruntime_genai.models.builder",
                "-i",
                str(bench.hf_dir),
                "-o",
                str(out),
                "-p",
                precision,
                "-e",
                "cpu",
                "-c",
                str(bench.work / "genai-cache"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    config_path = out / "genai_config.json"
    config = json.loads(config_path.read_text())
    options = config["model"]["decoder"].setdefault("session_options", {})
    if options.get("intra_op_num_threads") != bench.threads:
        options["intra_op_num_threads"] = bench.threads
        options["inter_op_num_threads"] = 1
        config_path.write_text(json.dumps(config, indent=2))
    model = og.Model(str(out))

    def once() -> tuple[float, float]:
        params = og.GeneratorParams(model)
        params.set_search_options(
            max_length=len(bench.prompt) + bench.new_tokens, min_length=0, do_sample=False
        )
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(bench.prompt)
        generator.generate_next_token()
        prefilled, cpu = time.perf_counter(), time.process_time()
        steps = 0
        while not generator.is_done() and steps < bench.new_tokens - 1:
            generator.generate_next_token()
            steps += 1
        end, cpu_end = time.perf_counter(), time.process_time()
        tokens = [int(t) for t in generator.get_sequence(0)[len(bench.prompt) :]]
        return (
            len(bench.prompt) / (prefilled - start),
            steps / (end - prefilled),
            tokens,
            steps / (cpu_end - cpu),
        )

    return once


def stream_bandwidth(mib: int = 512) -> float:
    """Bytes/s of a GEMV over a `mib` MiB fp32 matrix (best of 5): the decode roofline's bandwidth.

    The best, not the median: a bound should not drop when other processes load the machine.
    """
    rows = mib * (1 << 20) // 4 // 4096
    matrix = np.random.default_rng(0).standard_normal((rows, 4096), dtype=np.float32)
    vector = np.ones(4096, dtype=np.float32)
    matrix @ vector
    times = []
    for _ in range(5):
        start = time.perf_counter()
        matrix @ vector
        times.append(time.perf_counter() - start)
    return matrix.nbytes / min(times)


def llama_cpp(bench: Bench, requantize: str) -> Run:
    """llama.cpp (llama-cpp-python's `Llama`, its own greedy generate loop) on the GGUF file
    irgraph writes for the checkpoint: f32, q4_0 / q8_0 blocks written by gguf-py on every
    matrix, or (llama-q4_0) llama.cpp's own quantizer's q4_0 mix of the f32 file, which keeps
    output.weight at q6_K (needs irgraph[llama])."""
    from llama_cpp import Llama

    from irgraph.codegen.gguf import compile_graph

    art = bench.work / f"irgraph-gguf-{requantize}"
    compile_graph(load_graph(bench.hf_dir), art, requantize=requantize, force=True)
    llm = Llama(
        model_path=str(art / "model.gguf"),
        n_ctx=2 * len(bench.prompt) + 8,
        n_threads=bench.threads,
        n_threads_batch=bench.threads,
        n_batch=len(bench.prompt),
        verbose=False,
    )

    def once() -> tuple:
        llm.reset()
        stamps: list[tuple[float, float]] = []
        tokens: list[int] = []
        start = time.perf_counter()
        for token in llm.generate(bench.prompt, temp=0.0, top_k=1, reset=True):
            stamps.append(stamp())
            tokens.append(int(token))
            if len(tokens) == bench.new_tokens:
                break
        return measured(len(bench.prompt), start, stamps, tokens)

    return once


def roofline(bench: Bench) -> Run:
    """Decode bound: every weight but the embedding table is streamed once per token."""
    from safetensors import safe_open

    streamed = 0
    with safe_open(bench.hf_dir / "model.safetensors", "np") as f:
        for name in f.keys():
            if "embed_tokens" not in name:
                streamed += int(np.prod(f.get_slice(name).get_shape())) * 4
    return lambda: (float("nan"), stream_bandwidth() / streamed)


SYSTEMS: dict[str, Callable[[Bench], Run]] = {
    "irgraph-onnx": irgraph_onnx,
    "irgraph-tvm": irgraph_tvm,
    "hf-eager": hf_eager,
    "genai-fp32": genai_fp32,
    "roofline": roofline,
    # quantized rows (issue 15): RTN int4 g32 / g128 and int8 per channel, LM head 8 bits
    "irgraph-onnx-int4": partial(irgraph_onnx_quantized, scheme="int4-g32"),
    "irgraph-onnx-int4-al4": partial(irgraph_onnx_quantized, scheme="int4-g32", accuracy_level=4),
    "irgraph-onnx-int4-al4-h4": partial(
        irgraph_onnx_quantized, scheme="int4-g32-h4", accuracy_level=4
    ),
    "irgraph-onnx-int4-g128": partial(irgraph_onnx_quantized, scheme="int4-g128"),
    "irgraph-onnx-int8": partial(irgraph_onnx_quantized, scheme="int8"),
    "irgraph-tvm-int4": partial(irgraph_tvm_quantized, scheme="int4-g32"),
    "irgraph-tvm-int4-a8": partial(irgraph_tvm_quantized, scheme="int4-g32", activations="int8"),
    "irgraph-tvm-int4-a8-h4": partial(
        irgraph_tvm_quantized, scheme="int4-g32-h4", activations="int8"
    ),
    "irgraph-tvm-int4-g128": partial(irgraph_tvm_quantized, scheme="int4-g128"),
    "irgraph-tvm-int8": partial(irgraph_tvm_quantized, scheme="int8"),
    "irgraph-onnx-w8a8": partial(irgraph_onnx_quantized, scheme="w8a8"),
    "irgraph-tvm-w8a8": partial(irgraph_tvm_quantized, scheme="w8a8"),
    "genai-int4": partial(genai_fp32, precision="int4"),
    "roofline-int4": partial(quantized_roofline, scheme="int4-g32"),
    "llamacpp-f32": partial(llama_cpp, requantize="none"),
    "llamacpp-q4_0": partial(llama_cpp, requantize="q4_0"),
    "llamacpp-q4_0-own": partial(llama_cpp, requantize="llama-q4_0"),  # llama-quantize's mix
    "llamacpp-q8_0": partial(llama_cpp, requantize="q8_0"),
}


def table(
    results: dict[str, tuple[float, float]], same: dict[str, str], cpu: dict[str, float]
) -> str:
    base = results.get("genai-fp32", (0, 0))[1]
    roof = results.get("roofline", (0, 0))[1]
    cpu_base = cpu.get("genai-fp32")
    lines = [
        f"{'system':<16}{'prefill tok/s':>15}{'decode tok/s':>14}{'decode x genai':>16}"
        f"{'decode / roofline':>19}{'tok/CPU-s':>11}{'x genai':>9}{'tokens = hf-eager':>19}"
    ]
    for name, (prefill, decode) in results.items():
        vs_genai = f"{decode / base:.2f}x" if base else "-"
        vs_roof = f"{decode / roof:.0%}" if roof else "-"
        pre = f"{prefill:.1f}" if prefill == prefill else "-"
        per_cpu = f"{cpu[name]:.1f}" if name in cpu else "-"
        cpu_ratio = f"{cpu[name] / cpu_base:.2f}x" if name in cpu and cpu_base else "-"
        lines.append(
            f"{name:<16}{pre:>15}{decode:>14.1f}{vs_genai:>16}{vs_roof:>19}{per_cpu:>11}"
            f"{cpu_ratio:>9}{same.get(name, '-'):>19}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="4-layer hidden-256 model, 32 + 32 tokens"
    )
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SYSTEMS)}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--work", type=Path, default=ROOT.parent / ".cache" / "benchmarks" / "decode"
    )
    parser.add_argument(
        "--plot",
        action="store_true",
        help="also draw the results as a PNG beside the JSON (needs matplotlib)",
    )
    args = parser.parse_args(argv)
    if args.plot:
        _plots()._figure(1, 1)  # no matplotlib: say so before the run, not after it
    names = list(SYSTEMS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)} (expected: {', '.join(SYSTEMS)})")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    dims, length = (QUICK, 32) if args.quick else (FULL, 128)
    work = args.work / ("quick" if args.quick else "full")
    hf_dir = make_checkpoint(work / "hf", dims)
    prompt = list(np.random.default_rng(0).integers(3, dims["vocab_size"], length).tolist())
    bench = Bench(hf_dir, work, prompt, length, args.threads, args.repeats)
    runs = {}
    for name in names:  # set up (build, load) and warm up every system first
        runs[name] = SYSTEMS[name](bench)
        runs[name]()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(
        bench.repeats
    ):  # interleaved rounds, so load from other processes hits every system alike
        for name in names:
            samples[name].append(runs[name]())
            print(
                f"round {r}: {name}: prefill {samples[name][-1][0]:.1f} tok/s, "
                f"decode {samples[name][-1][1]:.1f} tok/s",
                flush=True,
            )
    results = {
        name: (statistics.median(m[0] for m in v), statistics.median(m[1] for m in v))
        for name, v in samples.items()
    }
    cpu = {name: statistics.median(m[3] for m in v) for name, v in samples.items() if len(v[0]) > 3}
    tokens = {name: v[-1][2] for name, v in samples.items() if len(v[-1]) > 2}
    ref = tokens.get("hf-eager")
    same = (
        {
            name: ("yes" if t == ref else f"no ({sum(a == b for a, b in zip(t, ref))}/{len(ref)})")
            for name, t in tokens.items()
        }
        if ref is not None
        else {}
    )
    if "roofline" in samples:  # the bound: best bandwidth seen in any round
        results["roofline"] = (float("nan"), max(m[1] for m in samples["roofline"]))
    print()
    print(
        f"LLaMA-style {dims}, prompt {length} + {length} new tokens, batch 1, greedy, "
        f"{args.threads} thread(s), median of {bench.repeats}"
    )
    print(table(results, same, cpu))
    out = ROOT / "results" / ("decode-quick.json" if args.quick else "decode.json")
    out.parent.mkdir(exist_ok=True)
    record = {
        "dims": dims,
        "tokens": length,
        "threads": args.threads,
        "repeats": bench.repeats,
        "results": {
            k: {
                "prefill_tps": v[0],
                "decode_tps": v[1],
                "tokens_equal_hf": same.get(k),
                "decode_tokens_per_cpu_second": cpu.get(k),
            }
            for k, v in results.items()
        },
    }
    out.write_text(json.dumps(record, indent=2, default=float) + "\n")
    if args.plot:
        print(f"plot: {_plots().speed_race(record, out.with_suffix('.png'))}")
    return results


def _plots() -> Any:
    """benchmarks/plots.py, whether this file runs as a script or as benchmarks.decode."""
    try:
        from benchmarks import plots
    except ImportError:  # `python benchmarks/decode.py`: this folder is on sys.path
        import plots  # type: ignore[no-redef]
    return plots


if __name__ == "__main__":
    main()
