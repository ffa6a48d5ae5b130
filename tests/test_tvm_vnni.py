"""tvm-llvm `activations=int8`: int4 x int8 linears on AVX-512 VNNI (codegen/tvm/vnni_kernels.py).

The kernel's integer sums are exact, so against numpy computing the same thing (activations
quantized per 32 values to int8 at max|x|/127, round half to even, then the dequantized int4
weight) it agrees to float rounding; against the interpreter (float activations) the artifact
differs by the activation rounding, which is measured, bounded as llama.cpp's q4_0 is in
tests/test_gguf_llama.py, and must exceed the exact path's. The "vnni16" weight layout is
checked value by value; CPUs without VNNI and unknown values are refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest

from irgraph import lm, model_zoo, runtimes
from irgraph.dtypes import DType
from irgraph.errors import ConfigError
from irgraph.passes import run_pipeline
from irgraph.quant import QuantSpec, choose_scales, quantize_arrays, unpack
from irgraph.runtimes.tvm import vnni16

tvm = pytest.importorskip("tvm")
from irgraph.codegen.tvm import targets  # noqa: E402
from irgraph.codegen.tvm.artifact import _check_activations, compile_graph  # noqa: E402

HOST = targets.resolve("tvm-llvm")
VNNI = tvm.target.codegen.target_has_features("avx512vnni", HOST.target)
needs_vnni = pytest.mark.skipif(not VNNI, reason="the host CPU has no AVX-512 VNNI")
SPEC = QuantSpec(4, 32, True, DType.f16)


def test_vnni16_layout_holds_each_value_where_the_kernel_reads_it():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 64)).astype(np.float32)
    stored = quantize_arrays(w, SPEC, *choose_scales(w, SPEC))
    q = unpack(stored[""], SPEC)[:, :64].astype(np.int64)  # [-8, 7]
    words = vnni16(stored[""])
    assert words.shape == (2, 8, 16) and words.dtype == np.int32
    raw = words.view(np.uint8).reshape(2, 8, 16, 4)  # (block, word, lane, byte)
    for n, k in [(0, 0), (5, 3), (17, 4), (31, 63), (16, 40), (9, 12)]:
        c, t, high = k // 8, k % 8 % 4, k % 8 >= 4
        byte = int(raw[n // 16, c, n % 16, t])
        assert (byte >> 4 if high else byte & 15) == q[n, k] + 8, (n, k)


def _one_linear(k: int, n: int):
    """A one-linear graph y = x · Wᵀ, W int4 g32 symmetric, built for tvm-llvm with int8
    activations: (call(x) -> y, its weight arguments, the float weight)."""
    from tvm import relax

    from irgraph import GraphBuilder
    from irgraph.codegen.tvm import lowering
    from irgraph.runtimes.tvm import pack_weight

    w = np.random.default_rng(0).standard_normal((n, k)).astype(np.float32)
    stored = quantize_arrays(w, SPEC, *choose_scales(w, SPEC))
    arrays = {"w" + s: a for s, a in stored.items()}
    b = GraphBuilder("one-linear")
    x = b.input("x", f"f32[tokens, {k}]")
    b.output("y", b.linear(x, b.param("w", f"i4<g32,sym,f16>[{n}, {k}]"), hint="y"))
    graph = b.build(arrays)
    mod, args = lowering.build_module(graph, "llvm", int8_activations=True)
    vm = relax.VirtualMachine(targets.compile_module(mod, HOST), tvm.cpu())
    weights = [tvm.runtime.tensor(pack_weight(arrays[a.name], a.layout)) for a in args]
    fn = vm[lowering.FUNCTION]
    return (lambda xs: fn(tvm.runtime.tensor(xs), *weights)), args, graph.weight("w")


def _int8_reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """numpy's y with x quantized per 32 values to int8 (max|x|/127, round half to even)."""
    blocks = x.reshape(x.shape[0], -1, 32).astype(np.float64)
    d = np.abs(blocks).max(-1, keepdims=True) / 127
    q = np.round(blocks / np.where(d == 0, 1, d))
    return ((q * d).reshape(x.shape) @ np.asarray(w, np.float64).T).astype(np.float32)


@needs_vnni
def test_int8_activation_linear_equals_numpy_on_the_same_int8_activations():
    call, args, w = _one_linear(k=96, n=48)
    assert {a.name: a.layout for a in args} == {"w": "vnni16", "w.scales": "packed16"}
    x = np.random.default_rng(1).standard_normal((5, 96)).astype(np.float32)
    x[2, 32:64] = 0  # an all-zero block: scale 0, no division by zero
    got = call(x)[0].numpy()  # forward returns its outputs as a tuple
    want = _int8_reference(x, w)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    assert np.abs(got - x @ np.asarray(w).T).max() > 1e-4  # the activations were int8


@needs_vnni
def test_int8_activations_on_a_zoo_model_report_their_error(tmp_path):
    graph = run_pipeline(model_zoo.build("llama-2"), "quantize(method=rtn,bits=4,group=32)").graph
    ids = np.random.default_rng(0).integers(3, 200, (2, 12))
    errors = {}
    for act in ("f32", "int8"):
        session = runtimes.open(compile_graph(graph, tmp_path / act, activations=act))
        assert session.manifest["tvm"]["activations"] == act
        for decode in (False, True):
            want = lm.interpret(graph, ids, decode=decode)
            errors[act, decode] = float(np.abs(session.forward(ids, decode=decode) - want).max())
    scale = float(np.abs(lm.interpret(graph, ids)).max())
    assert max(errors["f32", False], errors["f32", True]) <= 1e-4
    # measured 0.093 of logits up to 3.6 (2.6%); llama.cpp's q4_0 x q8_0: 2.5-3.5%
    for decode in (False, True):
        assert 1e-3 < errors["int8", decode] <= 0.06 * scale, errors


def test_int8_activations_are_refused_where_no_vnni_runs():
    with pytest.raises(ConfigError, match="activations=int8 runs AVX-512 VNNI kernels"):
        _check_activations("int8", targets.resolve("tvm-aarch64"))
    haswell = targets.TargetSpec(
        "tvm-llvm", tvm.target.Target({"kind": "llvm", "mcpu": "haswell"}), 32, "cpu"
    )
    with pytest.raises(ConfigError, match="mcpu haswell, without avx512vnni"):
        _check_activations("int8", haswell)
    with pytest.raises(ConfigError, match="unknown option activations.*f32 \\| int8"):
        _check_activations("int4", HOST)
    _check_activations("f32", haswell)  # the exact path runs anywhere
