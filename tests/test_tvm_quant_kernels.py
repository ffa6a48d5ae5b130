"""Fused dequantize-linear kernels on tvm-llvm (issue 15) match the interpreter on quantized graphs.

One graph holds many quantized linears (each its own input, so each its own K), compiled once
and run at decode (batch·seq = 1), batch > 1 and prefill shapes; the reference is the
interpreter on the same graph (it dequantizes, then multiplies); a quantized embedding table is
gathered row by row, bit-exact. The manifest shows which
weights took the fused kernels (packed stored parts) and which the materialising fallback.
"""

from __future__ import annotations

import numpy as np
import pytest

from irgraph import GraphBuilder
from irgraph.codegen.tvm.artifact import compile_graph
from irgraph.dtypes import DType
from irgraph.interpreter import run
from irgraph.ir import Graph
from irgraph.quant import QuantSpec, choose_scales, quantize_arrays
from irgraph.runtimes.tvm import TVMSession

# (spec, N, K): K not a multiple of the group or of the pair/tile loops, N not a multiple of 32
FAST = [
    (QuantSpec(4, 32, True, DType.f16), 64, 96),
    (QuantSpec(4, 128, False, DType.f32), 32, 200),  # asymmetric, short last group
    (QuantSpec(8, 32, True, DType.f32), 48, 72),  # nb 16
    (QuantSpec(4, 0, False, DType.f16), 16, 33),  # per channel, odd K: one value at a time
    (QuantSpec(3, 16, True, DType.f16), 32, 40),
    (QuantSpec(4, 32, True, DType.f16), 1, 64),  # N = 1: no packing block, materialised
    (QuantSpec(4, 6, True, DType.f16), 32, 36),  # even non-power-of-two group
    (QuantSpec(4, 5, True, DType.f32), 32, 30),  # odd group: pairs straddle groups, materialised
]
SLOW = [
    (QuantSpec(bits, group, sym, scale), n, k)
    for bits in (3, 4, 8)
    for group in (0, 16, 32, 128)
    for sym in (True, False)
    for scale in (DType.f16, DType.f32)
    for n, k in ((32, 128), (64, 77))
]
SHAPES = [(1, 1), (3, 1), (1, 13), (2, 9), (1, 4)]  # (batch, seq): decode, batched, prefill tiles


def _graph(cases: list[tuple[QuantSpec, int, int]]) -> Graph:
    rng = np.random.default_rng(0)
    b = GraphBuilder("quant-linears")
    arrays: dict[str, np.ndarray] = {}
    for i, (spec, n, k) in enumerate(cases):
        w = rng.standard_normal((n, k)).astype(np.float32)
        scales, zeros = choose_scales(w, spec)
        arrays.update({f"w{i}" + s: a for s, a in quantize_arrays(w, spec, scales, zeros).items()})
        x = b.input(f"x{i}", f"f32[batch, seq, {k}]")
        wv = b.param(f"w{i}", f"{spec.storage}<{spec}>[{n}, {k}]")
        b.output(f"y{i}", b.linear(x, wv, hint=f"y{i}"))
    spec = QuantSpec(4, 16, False, DType.f16)  # a table read only by an embedding: rows gathered
    w = rng.standard_normal((50, 40)).astype(np.float32)
    arrays.update(
        {"table" + s: a for s, a in quantize_arrays(w, spec, *choose_scales(w, spec)).items()}
    )
    table = b.param("table", f"i4<{spec}>[50, 40]")
    b.output("rows", b.embedding(b.input("ids", "i64[batch, seq]"), table, hint="rows"))
    return b.build(arrays)


def _check(cases: list[tuple[QuantSpec, int, int]], tmp_path) -> TVMSession:
    graph = _graph(cases)
    session = TVMSession(compile_graph(graph, tmp_path / "q", target="tvm-llvm"))
    rng = np.random.default_rng(1)
    for batch, seq in SHAPES:
        feeds = {
            f"x{i}": rng.standard_normal((batch, seq, k)).astype(np.float32)
            for i, (_, _, k) in enumerate(cases)
        }
        feeds["ids"] = rng.integers(0, 50, (batch, seq))
        got, want = session.run(feeds), run(graph, feeds)
        np.testing.assert_array_equal(got["rows"], want["rows"])
        for i, case in enumerate(cases):
            np.testing.assert_allclose(
                got[f"y{i}"], want[f"y{i}"], rtol=1e-4, atol=1e-4, err_msg=f"{case} {batch}x{seq}"
            )
    return session


def test_fused_kernels_match_the_interpreter(tmp_path):
    session = _check(FAST, tmp_path)
    layouts = {a["name"]: a["layout"] for a in session.manifest["tvm"]["weight_args"]}
    assert layouts["w0"] == "packed32" and layouts["w0.scales"] == "packed32"
    assert layouts["w1.zero_points"] == "packed32"
    assert layouts["w2"] == "packed16" and layouts["w3"] == "packed16"
    assert layouts["w5"] == "plain" and layouts["w7"] == "plain"  # the fallbacks


@pytest.mark.slow
def test_fused_kernel_matrix_matches_the_interpreter(tmp_path):
    session = _check(SLOW, tmp_path)
    assert all(a["layout"] != "plain" for a in session.manifest["tvm"]["weight_args"])
