"""What W8A8's per-token ONNX lowering costs next to a float MatMul (issue 13).

    .venv/bin/python -m benchmarks.w8a8_matmul [--k 4096] [--n 4096] [--rows 1 16 128]

One linear y = x·Wᵀ, W [N, K], on ORT's CPU provider with one thread (docs/
onnxruntime.md §5), each variant in its own session, median of `--iters` runs after warm-up:

    fp32              irgraph's lowering of a float linear (one MatMul)
    w8a8 per-token    irgraph's lowering of quantize(method=w8a8): the explicit per-token ops
                      (Abs, ReduceMax, Div, Where, Div, Round, Clip, Add 128, Cast u8) around
                      MatMulInteger (uint8 x uint8, zero points 128), then Cast, Mul, Mul
    MatMulInteger u8u8  the integer product alone on activations already quantized, as the
                      lowering feeds it: the floor of the lowering
    MatMulInteger u8s8  uint8 activations x int8 weights: MLAS' fastest path, but on AVX2
                      without VNNI it saturates int16 pair sums (wrong results on full-range
                      int8 weights, found by tests/test_w8a8_backends.py), so not used
    MatMulInteger s8  int8 x int8: a slow path in ORT 1.32 on this CPU
    quantize ops      the lowering's ops before MatMulInteger alone (x -> int8 per token)
    DynamicQuantizeMatMul   ORT's fused op (A quantized per tensor, uint8): not the IR's
                      numerics, shown for its speed

Prints a table (ms; time as a multiple of fp32's); writes benchmarks/results/w8a8_matmul.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from irgraph import GraphBuilder
from irgraph.codegen.onnx import compile_graph
from irgraph.passes import run_pipeline


def _session(model: bytes | str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _median_ms(sess: ort.InferenceSession, feeds: dict, iters: int) -> float:
    for _ in range(5):
        sess.run(None, feeds)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _single(op: str, inputs: list, inits: list, out_type: int, domain: str = "") -> bytes:
    node = helper.make_node(op, [i.name for i in inputs] + [t.name for t in inits], ["y"])
    if domain:
        node.domain = domain
    graph = helper.make_graph(
        [node], op, inputs, [helper.make_tensor_value_info("y", out_type, None)], inits
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _quantize_prefix(model: Path, out: Path) -> str:
    """The w8a8 model cut at the int8 activations MatMulInteger reads (the quantize ops)."""
    m = onnx.load(str(model))
    mmi = next(node for node in m.graph.node if node.op_type == "MatMulInteger")
    onnx.save(m, str(out.with_suffix(".full.onnx")))
    onnx.utils.extract_model(str(out.with_suffix(".full.onnx")), str(out), ["x"], [mmi.input[0]])
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--rows", type=int, nargs="*", default=[1, 16, 128])
    ap.add_argument("--iters", type=int, default=30)
    args = ap.parse_args()
    k, n = args.k, args.n
    rng = np.random.default_rng(0)
    b = GraphBuilder("linear")
    x = b.input("x", f"f32[rows, {k}]")
    b.output("y", b.linear(x, b.param("w", f"f32[{n}, {k}]"), hint="y"))
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    graph = b.build({"w": w})
    q = run_pipeline(graph, "quantize(method=w8a8)").graph
    wq = np.ascontiguousarray(np.asarray(q.stored("w")[""]).T)
    sw = np.asarray(q.stored("w")[".scales"], np.float32).reshape(-1)
    a8 = helper.make_tensor_value_info("x", TensorProto.INT8, ["rows", k])
    u8 = helper.make_tensor_value_info("x", TensorProto.UINT8, ["rows", k])
    a32 = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", k])
    wu8 = numpy_helper.from_array((wq.astype(np.int16) + 128).astype(np.uint8), "w")
    z = numpy_helper.from_array(np.uint8(128), "z")
    with tempfile.TemporaryDirectory() as tmp:
        w8a8_model = compile_graph(q, Path(tmp) / "q") / "model.onnx"
        sessions = {
            "fp32": _session(str(compile_graph(graph, Path(tmp) / "f") / "model.onnx")),
            "w8a8 per-token": _session(str(w8a8_model)),
            "MatMulInteger u8u8": _session(
                _single("MatMulInteger", [u8], [wu8, z, z], TensorProto.INT32)
            ),
            "MatMulInteger u8s8": _session(
                _single(
                    "MatMulInteger", [u8], [numpy_helper.from_array(wq, "w"), z], TensorProto.INT32
                )
            ),
            "MatMulInteger s8": _session(
                _single(
                    "MatMulInteger", [a8], [numpy_helper.from_array(wq, "w")], TensorProto.INT32
                )
            ),
            "quantize ops": _session(_quantize_prefix(w8a8_model, Path(tmp) / "prefix.onnx")),
            "DynamicQuantizeMatMul": _session(
                _single(
                    "DynamicQuantizeMatMul",
                    [a32],
                    [numpy_helper.from_array(wq, "w"), numpy_helper.from_array(sw, "s")],
                    TensorProto.FLOAT,
                    domain="com.microsoft",
                )
            ),
        }
        rows = []
        for m in args.rows:
            xs = rng.standard_normal((m, k)).astype(np.float32)
            x8 = np.clip(np.round(xs * 30), -128, 127).astype(np.int8)
            xu8 = (x8.astype(np.int16) + 128).astype(np.uint8)
            feeds = {"MatMulInteger s8": x8, "MatMulInteger u8u8": xu8, "MatMulInteger u8s8": xu8}
            row: dict[str, float] = {"rows": m}
            for name, sess in sessions.items():
                feed = feeds.get(name, xs)
                row[name] = _median_ms(sess, {"x": feed}, args.iters)
            rows.append(row)
            print(json.dumps({key: round(v, 3) for key, v in row.items()}), flush=True)
    names = list(rows[0])[1:]
    print(f"\nW [{n}, {k}], ORT {ort.__version__} CPU, 1 thread, median ms (time / fp32)")
    print("| rows | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for r in rows:
        cells = [f"{r[c]:.3f} ({r[c] / r['fp32']:.2f}x)" for c in names]
        print(f"| {r['rows']} | " + " | ".join(cells) + " |")
    out = Path(__file__).parent / "results" / "w8a8_matmul.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "ort": ort.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
