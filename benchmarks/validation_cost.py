"""What issue 12's checks cost: NaN/Inf scan of weights, feed checks per call, compile's load check.

    .venv/bin/python -m benchmarks.validation_cost [--mib 512] [--hidden 512] [--layers 4]

- finite: `irgraph.finite.first_nonfinite` over one memory-mapped f32 tensor of --mib MiB
  (page cache warm: just written), against a plain read pass (sum) of the same bytes, and
  over in-memory f16 / bf16 arrays of half as many bytes each.
- feeds: `Session.check` (irgraph/feeds.py) on one generation step's feeds of a model with
  --layers layers (batch 1, 512 cached positions), against the step itself on ONNX Runtime.
- load check: what `irgraph compile` adds after writing an ONNX artifact of a --hidden wide,
  --layers deep learned-position model (vocab 32000): open it and run one token (forward + one
  generation step), against the compile itself.
Prints seconds (best of 3 where repeated) and GB/s (10^9 bytes per second).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ml_dtypes
import numpy as np

from irgraph import finite, lm, model_zoo
from irgraph.weights import WeightStore, save_safetensors


def best(fn, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def finite_cost(folder: Path, mib: int) -> None:
    n = mib * (1 << 20) // 4
    save_safetensors({"w": np.ones(n, np.float32)}, folder / "w.safetensors")
    array = WeightStore.open(folder / "w.safetensors")["w"]
    scan = best(lambda: finite.first_nonfinite(array))
    read = best(lambda: float(array.sum(dtype=np.float32)))
    print(f"finite f32 {mib} MiB memory-mapped: {scan:.3f} s ({n * 4 / scan / 1e9:.2f} GB/s)")
    print(f"  a plain read pass (sum): {read:.3f} s ({n * 4 / read / 1e9:.2f} GB/s)")
    for dtype in (np.float16, ml_dtypes.bfloat16):
        half = np.ones(n, dtype)
        t = best(lambda half=half: finite.first_nonfinite(half))
        print(
            f"finite {np.dtype(dtype).name} {mib} MiB in memory: {t:.3f} s "
            f"({n * 2 / t / 1e9:.2f} GB/s)"
        )


def model(hidden: int, layers: int):
    cfg = model_zoo.config("gpt-3", "tiny").replace(
        name="bench",
        vocab_size=32000,
        hidden=hidden,
        layers=layers,
        heads=hidden // 64,
        ffn=4 * hidden,
        max_position=2048,
    )
    return model_zoo.build_graph(cfg, weights="random", seed=0)


def compile_cost(folder: Path, hidden: int, layers: int) -> None:
    import irgraph.runtimes
    from irgraph.cli.compile_checks import load_check
    from irgraph.codegen.onnx import compile_graph

    graph = model(hidden, layers)
    params = sum(int(np.prod(v.type.shape)) for v in graph.params.values())
    start = time.perf_counter()
    compile_graph(graph, folder / "art")
    built = time.perf_counter() - start
    start = time.perf_counter()
    load_check(folder / "art", graph, {})
    checked = time.perf_counter() - start
    print(f"compile onnx, {params / 1e6:.0f}M params: {built:.2f} s; load check: {checked:.2f} s")

    session = irgraph.runtimes.open(folder / "art")
    cache = {
        n: np.zeros((1, t.shape[1], 512, t.shape[3]), np.float32)
        for n, t in lm.cache_inputs(session.inputs).items()
    }
    feeds = lm.make_feeds(session.inputs, np.array([[5]]), cache, past_len=512)
    check = best(lambda: session.check(feeds), 20)
    step = best(lambda: session._step(feeds), 5)
    print(
        f"feeds check per step ({len(feeds)} feeds, 512 cached): {check * 1e6:.0f} us; "
        f"the ORT step: {step * 1e3:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        finite_cost(Path(tmp), args.mib)
        compile_cost(Path(tmp), args.hidden, args.layers)


if __name__ == "__main__":
    main()
