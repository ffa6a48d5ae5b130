"""GFLOP/s of the TVM CPU linear kernel at the 125M LLaMA's shapes, against numpy and ORT.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tvm_kernels.py [--tokens 128,1] [--repeats 5]

For every (M tokens, K in, N out) of the decode benchmark's model (hidden 768,
FFN 2048, vocab 32000) it times y = x·Wᵀ three ways, one thread each:

  tvm     irgraph's packed-weight kernel (`codegen/tvm/linear.py`), built alone for the host
  numpy   x @ W.T (the BLAS numpy links, OPENBLAS/OMP threads = 1)
  ort     a one-node ONNX MatMul (W stored [K, N]) in onnxruntime, intra-op threads 1

Each measurement is the median over --repeats interleaved rounds (so load from
other processes hits all three alike) of the best of a few calls; the table
gives GFLOP/s and tvm's ratio to the other two.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np  # noqa: E402

SHAPES = [
    (768, 768),
    (768, 256),
    (768, 2048),
    (2048, 768),
    (768, 32000),
]  # (K, N): q/o, k/v, up, down, head


def tvm_linear(k: int, n: int, w: np.ndarray):
    """irgraph's packed kernel for w [n, k], compiled alone for the host: (call(x, y), device)."""
    import tvm
    from tvm.target import Target

    from irgraph.codegen.tvm.linear import packed_kernel
    from irgraph.runtimes.tvm import pack_weight

    nb = 32 if n % 32 == 0 else 16
    kernel = packed_kernel(n, k, nb, "float32", "float32").with_attr("global_symbol", "linear")
    func = tvm.compile(tvm.IRModule({"linear": kernel}), target=Target.from_device(tvm.cpu()))[
        "linear"
    ]
    dev = tvm.cpu()
    packed = tvm.runtime.tensor(pack_weight(w, f"packed{nb}"), dev)
    return (lambda x, y: func(x, packed, y)), dev


def ort_matmul(k: int, n: int, w: np.ndarray):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wt"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "wt")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    onnx.checker.check_model(model)
    return lambda x: sess.run(None, {"x": x})[0]


def best_of(fn, budget: float = 0.25) -> float:
    """Seconds of the fastest call among those that fit in `budget` (at least 3)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < budget:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    import tvm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="128,1", help="comma-separated M values")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    ms = [int(m) for m in args.tokens.split(",")]
    rng = np.random.default_rng(0)
    for k, n in SHAPES:
        w = rng.standard_normal((n, k), dtype=np.float32)
        call, dev = tvm_linear(k, n, w)
        ort_run = ort_matmul(k, n, w)
        for m in ms:
            x = rng.standard_normal((m, k), dtype=np.float32)
            xt, yt = tvm.runtime.tensor(x, dev), tvm.runtime.empty((m, n), "float32", dev)
            call(xt, yt)
            ref = x @ w.T
            err = float(np.abs(yt.numpy() - ref).max() / np.abs(ref).max())
            if err > 1e-4:
                raise SystemExit(f"tvm kernel wrong at M={m} K={k} N={n}: rel err {err:.2e}")
            fns = {
                "tvm": partial(call, xt, yt),
                "numpy": partial(np.matmul, x, w.T),
                "ort": partial(ort_run, x),
            }
            samples: dict[str, list[float]] = {name: [] for name in fns}
            for _ in range(args.repeats):
                for name, fn in fns.items():
                    samples[name].append(best_of(fn))
            gflops = {
                name: 2 * m * k * n / statistics.median(v) / 1e9 for name, v in samples.items()
            }
            print(
                f"M={m:4d} K={k:5d} N={n:6d}  tvm {gflops['tvm']:6.1f}  numpy "
                f"{gflops['numpy']:6.1f}  ort {gflops['ort']:6.1f} GFLOP/s   tvm/numpy "
                f"{gflops['tvm'] / gflops['numpy']:.2f}  tvm/ort "
                f"{gflops['tvm'] / gflops['ort']:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
