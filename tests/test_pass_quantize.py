"""The quantize pass (issue 13 item 2, rtn): what it quantizes, known answers, bad input, the zoo.

A quantized graph must run in the interpreter exactly as the float graph whose weights are the
dequantized ones (the pass changes weights and types, never the computation).
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import irgraph
import irgraph.model_zoo as zoo
from irgraph import GraphBuilder, lm
from irgraph.cli import main
from irgraph.errors import PassError
from irgraph.ir import Graph
from irgraph.passes import run_pipeline
from irgraph.quant import SCALES, ZEROS, unpack
from irgraph.weights import WeightStore
from tests.helpers.handbuilt import tiny_llama


def quantized(g: Graph, pipeline: str = "quantize(bits=4, group=32)") -> Graph:
    return run_pipeline(g, pipeline).graph


def dequantized_twin(g: Graph, q: Graph) -> Graph:
    """The float graph `g` with every quantized weight of `q` replaced by its dequantized value."""
    arrays = {
        name: np.asarray(q.weight(name)).astype(g.params[name].type.dtype.numpy)
        for name in g.params
    }
    return Graph(
        g.name,
        dict(g.inputs),
        dict(g.params),
        list(g.nodes),
        dict(g.outputs),
        dict(g.meta),
        WeightStore(arrays),
    )


def _matrix_graph(w: np.ndarray) -> Graph:
    b = GraphBuilder("m")
    x = b.input("x", f"f32[batch, {w.shape[1]}]")
    b.output("y", b.linear(x, b.param("w", f"f32[{w.shape[0]}, {w.shape[1]}]"), hint="y"))
    return b.build({"w": w})


def test_rtn_known_answer_through_the_pass():
    # groups of 4 along K=10 (last group padded with 2 zeros); scale = max|x| / 7 in f32
    w = np.array(
        [
            [7.0, -3.5, 0.0, 1.0, 0, 0, 0, 0, 3.5, -7.0],  # ties at .5, an all-zero group
            [-1.0, -1.0, -1.0, -1.0, 2.0, 2.0, 2.0, 2.0, 5.0, 5.0],  # one value per group
        ],
        np.float32,
    )
    q = quantized(_matrix_graph(w), "quantize(bits=4, group=4, scale_dtype=f32)")
    assert str(q.params["w"].type) == "i4<g4,sym,f32>[2, 10]"
    stored = q.stored("w")
    assert stored[""].shape == (2, 6) and set(stored) == {"", SCALES}
    np.testing.assert_array_equal(
        unpack(stored[""], q.params["w"].type.quant),
        [[7, -4, 0, 1, 0, 0, 0, 0, 4, -7, 0, 0], [-7, -7, -7, -7, 7, 7, 7, 7, 7, 7, 0, 0]],
    )
    np.testing.assert_allclose(q.weight("w"), [[7, -4, 0, 1, 0, 0, 0, 0, 4, -7], w[1]], rtol=1e-6)
    x = np.eye(10, dtype=np.float32)
    np.testing.assert_allclose(irgraph.run(q, {"x": x})["y"], q.weight("w").T, rtol=1e-6)


def test_what_is_quantized_and_what_stays_float():
    g = tiny_llama()
    q = quantized(g)
    kinds = {name: str(v.type).split("[")[0] for name, v in q.params.items()}
    head = "lm_head.weight" if "lm_head.weight" in g.params else "embed.weight"
    assert kinds[head] == "i8<g32,sym,f16>"  # the LM head keeps 8 bits
    linears = [n.inputs[1].param for n in g.nodes if n.op == "linear"]
    assert all(kinds[p] == "i4<g32,sym,f16>" for p in linears if p != head)
    norms = [n.inputs[1].param for n in g.nodes if n.op in ("rms_norm", "layer_norm")]
    assert norms and all(kinds[p] == "f32" for p in norms)
    assert q.stored_names()[: len(q.params) + 2] and len(q.stored_names()) > len(q.params)
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_allclose(
        lm.interpret(q, ids), lm.interpret(dequantized_twin(g, q), ids), rtol=1e-6, atol=1e-6
    )


def test_head_bits_sets_the_lm_head_floor():
    g = tiny_llama()
    head = "lm_head.weight" if "lm_head.weight" in g.params else "embed.weight"
    four = quantized(g, "quantize(bits=4, group=32, head_bits=4)")
    assert str(four.params[head].type).startswith("i4<g32,sym,f16>")
    eight = quantized(g, "quantize(bits=8, group=32, head_bits=4)")  # never below bits
    assert str(eight.params[head].type).startswith("i8<g32,sym,f16>")
    with pytest.raises(PassError, match="head_bits of pass quantize are not used"):
        quantized(g, "quantize(method=w8a8, head_bits=4)")


def test_asymmetric_per_channel_and_skip_globs():
    g = tiny_llama()
    q = quantized(
        g, 'quantize(bits=8, group=0, sym=false, skip="layers.*.gate.weight, *.up.*,embed*")'
    )
    for name, v in q.params.items():
        if name.endswith((".gate.weight", ".up.weight")) or name.startswith("embed"):
            assert v.type.quant is None, name
        elif v.type.quant is not None:
            assert str(v.type).startswith("i8<ch,asym,f16>"), name
            assert q.stored(name)[ZEROS].shape == (v.type.shape[0], 1)
    assert any(v.type.quant is not None for v in q.params.values())


def test_three_bits_fit_in_i4_and_report_stored_size():
    q = quantized(tiny_llama(), "quantize(bits=3, group=16)")
    v = next(v for v in q.params.values() if v.type.quant is not None and v.type.quant.bits == 3)
    assert str(v.type).startswith("i4<b3,g16,sym,f16>")
    values = unpack(q.stored(v.param or "")[""], v.type.quant)
    assert values.min() >= -4 and values.max() <= 3
    n, k = v.type.shape
    assert v.type.nbytes() == n * k // 2 + n * (k // 16) * 2


@pytest.mark.parametrize(
    "pipeline, message",
    [
        (
            "quantize(bits=5)",
            "option 'bits' of pass quantize (expected int, one of 3, 4, 8, got '5')",
        ),
        ("quantize(group=-1)", "option 'group' of pass quantize (expected int, 0 <= group"),
        ("quantize(grid=10)", "option(s) grid of pass quantize are not used by method=rtn"),
        (
            "quantize(method=w8a8, bits=8)",
            "option(s) bits of pass quantize are not used by method=w8a8",
        ),
        ('quantize(skip="nope.*")', "skip pattern 'nope.*' of pass quantize matches no parameter"),
    ],
)
def test_bad_options_fail_with_one_clear_error(pipeline, message):
    with pytest.raises(PassError) as e:
        run_pipeline(tiny_llama(), pipeline)
    assert message in str(e.value)


def test_quantizing_twice_is_an_error():
    q = quantized(tiny_llama())
    with pytest.raises(PassError, match=r"weight @\S+ is already quantized \(i[48]<g32,sym,f16>\)"):
        run_pipeline(q, "quantize(bits=8)")


def test_structure_only_graph_is_retyped():
    g = zoo.build("llama-2", size="tiny", weights=False)
    q = quantized(g)
    assert q.weights is None
    assert (
        sum(v.type.nbytes() for v in q.params.values())
        < sum(v.type.nbytes() for v in g.params.values()) / 3
    )


def test_cli_opt_then_inspect_shows_bytes_before_and_after(tmp_path):
    irgraph.save(tiny_llama(), tmp_path / "f")
    r = CliRunner().invoke(
        main,
        ["opt", str(tmp_path / "f"), "--passes", "quantize(group=32)", "-o", str(tmp_path / "q")],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    assert "param @layers.0.q.weight: i4<g32,sym,f16>[" in r.output
    line = next(x for x in r.output.splitlines() if "i4<g32,sym,f16>" in x and "MiB" in x)
    before, after = (float(s.split()[0]) for s in line.split("values")[1].split("->"))
    assert after < before / 3
    r = CliRunner().invoke(
        main, ["opt", str(tmp_path / "q"), "--passes", "quantize", "-o", str(tmp_path / "qq")]
    )
    assert r.exit_code != 0 and "already quantized" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "qq").exists()


def _survives(name: str) -> None:
    g = zoo.build(name, size="tiny", seed=0)
    q = quantized(g)
    q.verify()
    assert any(v.type.quant is not None for v in q.params.values())
    rng = np.random.default_rng(0)
    ids = rng.integers(1, min(int(g.meta.get("vocab_size", 32)), 50), (2, 5))
    kw = {}
    if lm.is_encoder_decoder({n: v.type for n, v in g.inputs.items()}):
        kw["encoder_ids"] = rng.integers(1, 20, (2, 4))
    twin = dequantized_twin(g, q)
    for decode in (False, True):
        np.testing.assert_allclose(
            lm.interpret(q, ids, decode=decode, **kw),
            lm.interpret(twin, ids, decode=decode, **kw),
            rtol=1e-5,
            atol=1e-5,
        )
    for name, v in q.params.items():  # RTN at 4 bits, groups of 32: a bounded weight error
        if v.type.quant is not None:
            w, wq = np.asarray(g.weight(name), np.float32), q.weight(name)
            assert np.abs(wq - w).max() <= np.abs(w).max() / 7 * 0.51 + 1e-6, name


FAST = ["llama-2", "mixtral-8x22b", "t5", "deepseek-v2", "bloom"]


@pytest.mark.parametrize("name", FAST)
def test_zoo_twin_survives_rtn(name):
    _survives(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in zoo.names() if n not in FAST])
def test_every_zoo_twin_survives_rtn(name):
    _survives(name)


def test_f16_graph_keeps_its_types_through_a_cast_after_the_quantized_table():
    rng = np.random.default_rng(0)
    b = GraphBuilder("half")
    ids = b.input("ids", "i64[batch, seq]")
    h = b.embedding(ids, b.param("table", "f16[40, 32]"), hint="h")
    b.output("y", b.linear(h, b.param("w", "f16[16, 32]"), hint="y"))
    arrays = {
        "table": rng.standard_normal((40, 32)).astype(np.float16),
        "w": rng.standard_normal((16, 32)).astype(np.float16),
    }
    g = b.build(arrays)
    q = quantized(g)
    text = str(q)
    assert "%h: f32[batch, seq, 32] = embedding(%ids, @table)" in text
    assert '%h_1: f16[batch, seq, 32] = cast(%h) {dtype="f16"}' in text
    assert q.outputs["y"].type == g.outputs["y"].type
    ids_in = np.array([[3, 39, 0]])
    h16 = q.weight("table")[ids_in].astype(np.float16)  # f32 rows, cast back to the graph's f16
    want = (h16.astype(np.float32) @ q.weight("w").T).astype(np.float16)
    np.testing.assert_array_equal(irgraph.run(q, {"ids": ids_in})["y"], want)
