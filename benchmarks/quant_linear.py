"""The fused dequantize-linear kernels against TVM's materialising path, at the 125M LLaMA's shapes.

    .venv/bin/python benchmarks/quant_linear.py [--tokens 1,128] [--repeats 7] [--quick]

For every (K in, N out) of the decode benchmark's model and every spec (int4 g32 / g128 sym,
int4 g32 asym, int8 per channel) a one-linear graph is compiled for tvm-llvm three ways:

  fused   the stored parts packed, unpacked in registers (`codegen/tvm/quant_kernels.py`)
  mater   the float weight materialised by a dequantize kernel every call, then multiplied
          (what irgraph did before issue 15, and what stock TVM does)
  f32     the float weight in the packed float kernel (`codegen/tvm/linear.py`), for scale

One TVM thread. Each number is the median over --repeats interleaved rounds (so load from other
processes hits all alike) of the CPU time of one call (process time: time slices lost to other
processes do not count), shown as microseconds per call and fused's speed-up over mater.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np  # noqa: E402

SHAPES = [(768, 768), (768, 2048), (2048, 768), (768, 32000)]  # (K, N): q/o, up, down, head
SPECS = ["i4<g32,sym,f16>", "i4<g128,sym,f16>", "i4<g32,asym,f16>", "i8<ch,sym,f32>"]


def build(k: int, n: int, spec: str, fused: bool):
    """(call(x) -> y, seconds to build) for y = x · Wᵀ with W of `spec` ('f32' for float)."""
    import tvm
    from tvm import relax

    from irgraph import GraphBuilder
    from irgraph.codegen.tvm import lowering, targets
    from irgraph.quant import choose_scales, quantize_arrays
    from irgraph.runtimes.tvm import pack_weight
    from irgraph.types import parse_type

    w = np.random.default_rng(0).standard_normal((n, k)).astype(np.float32)
    t = parse_type(f"{spec}[{n}, {k}]")
    if t.quant is None:
        arrays = {"w": w}
    else:
        scales, zeros = choose_scales(w, t.quant)
        arrays = {"w" + s: a for s, a in quantize_arrays(w, t.quant, scales, zeros).items()}
    b = GraphBuilder("one-linear")
    x = b.input("x", f"f32[tokens, {k}]")
    b.output("y", b.linear(x, b.param("w", f"{spec}[{n}, {k}]"), hint="y"))
    graph = b.build(arrays)
    saved = lowering.fusable
    if not fused:
        lowering.fusable = lambda spec, k: False  # the materialising lowering
    try:
        start = time.perf_counter()
        mod, args = lowering.build_module(graph, "llvm")
        ex = targets.compile_module(mod, targets.resolve("tvm-llvm", "sm_80"))
        built = time.perf_counter() - start
    finally:
        lowering.fusable = saved
    dev = tvm.cpu()
    vm = relax.VirtualMachine(ex, dev)
    weights = [tvm.runtime.tensor(pack_weight(arrays[a.name], a.layout), dev) for a in args]
    fn = vm[lowering.FUNCTION]
    return (lambda xs: fn(xs, *weights)), built


def cpu_seconds(call, x, calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        call(x)
    return (time.process_time() - start) / calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", default="1,128", help="comma-separated M values")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one shape, two specs")
    args = parser.parse_args(argv)
    import tvm

    shapes, specs = (SHAPES[1:2], SPECS[:1] + SPECS[3:]) if args.quick else (SHAPES, SPECS)
    tokens = [int(m) for m in args.tokens.split(",")]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; 1 TVM thread")
    print(
        f"{'K x N':>11} {'spec':<18}{'M':>5}{'fused us':>11}{'mater us':>11}{'f32 us':>10}"
        f"{'fused/mater':>13}"
    )
    dev = tvm.cpu()
    for k, n in shapes:
        f32, _ = build(k, n, "f32", True)
        for spec in specs:
            fused, _ = build(k, n, spec, True)
            mater, _ = build(k, n, spec, False)
            for m in tokens:
                xs = np.random.default_rng(1).standard_normal((m, k), "float32")
                x = tvm.runtime.tensor(xs, dev)
                calls = max(1, int(2e8 / (m * k * n))) if m > 1 else 20
                runs: dict[str, list[float]] = {"fused": [], "mater": [], "f32": []}
                for call in (fused, mater, f32):  # warm up
                    call(x)
                for _ in range(args.repeats):
                    for name, call in (("fused", fused), ("mater", mater), ("f32", f32)):
                        runs[name].append(cpu_seconds(call, x, calls))
                med = {name: statistics.median(v) * 1e6 for name, v in runs.items()}
                print(
                    f"{k:>5}x{n:<5} {spec:<18}{m:>5}{med['fused']:>11.0f}{med['mater']:>11.0f}"
                    f"{med['f32']:>10.0f}{med['mater'] / med['fused']:>12.1f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
