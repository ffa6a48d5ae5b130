"""PanGu-Σ's Random Routed Experts (issue 18 item 6): a fixed random (domain, token) -> expert
table per sparse layer, the domain id a graph input (`domain_ids`) that lm.make_feeds, every
runtime, generate and the CLI (`--domain`) carry; the backends match the interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from irgraph import lm, model_zoo
from irgraph.cli import main
from irgraph.errors import ConfigError, InputError
from irgraph.passes.calibrate import evaluate
from irgraph.runtimes.interpreter import InterpreterSession

IDS = np.random.default_rng(0).integers(3, 200, (2, 9))


@pytest.fixture(scope="module")
def pangu():
    return model_zoo.build("pangu-sigma", size="tiny", seed=0)


def _moe_out(graph, ids, domain):
    node = next(n for n in graph.nodes if n.op == "moe_experts")

    inputs = lm.graph_inputs(graph)
    feeds = lm.make_feeds(inputs, ids, lm.empty_cache(inputs, len(ids)), past_len=0, domain=domain)
    got = evaluate(graph, feeds, {node.inputs[0], node.outputs[0]}, {})
    return node, got[node.inputs[0]], got[node.outputs[0]]


def test_each_token_runs_its_domains_expert_from_the_table(pangu):
    cfg = model_zoo.config("pangu-sigma", "tiny")
    tables = {n: np.asarray(pangu.weight(n)) for n in pangu.params if n.endswith("moe.routes")}
    assert tables and all(t.shape == (2, cfg.vocab_size) for t in tables.values())
    for t in tables.values():  # each domain picks among its own 2 of the 4 experts
        assert set(np.unique(t[0])) == {0, 1} and set(np.unique(t[1])) == {2, 3}
    assert not any(n.endswith("router.weight") for n in pangu.params)  # no learned gate
    node, x, out = _moe_out(pangu, IDS, [0, 1])
    router = pangu.producers()[node.inputs[2]]
    assert router.op == "moe_fixed_router"
    table = tables[router.inputs[2].param]
    up, down = (np.asarray(pangu.weight(v.param)) for v in node.inputs[3:5])
    assert len(node.inputs) == 5  # PanGu's experts are plain MLPs: act(x·Uᵀ)·Dᵀ
    act = {"fast_gelu": lambda h: h / (1 + np.exp(-1.702 * h))}[node.attrs["act"]]
    for row, domain in enumerate((0, 1)):
        for j, tok in enumerate(IDS[row]):
            e = table[domain, tok]
            h = act(x[row, j] @ up[e].T)
            np.testing.assert_allclose(out[row, j], h @ down[e].T, rtol=1e-4, atol=1e-5)


def test_the_domain_changes_the_logits_and_decode_equals_prefill(pangu):
    d0, d1 = lm.interpret(pangu, IDS), lm.interpret(pangu, IDS, domain=1)
    assert np.abs(d0 - d1).max() > 1e-2
    np.testing.assert_allclose(lm.interpret(pangu, IDS, domain=1, decode=True), d1, atol=1e-5)
    mixed = lm.interpret(pangu, IDS, domain=np.array([0, 1]))
    np.testing.assert_array_equal(mixed[0], d0[0])
    np.testing.assert_array_equal(mixed[1], d1[1])


def test_backends_match_the_interpreter_in_every_domain(pangu, tmp_path):
    from irgraph.codegen.onnx import compile_graph as onnx_compile
    from irgraph.codegen.torch import numpy_runner, to_torch
    from irgraph.codegen.tvm.artifact import compile_graph as tvm_compile
    from irgraph.runtimes.onnx import ORTSession
    from irgraph.runtimes.tvm import TVMSession

    onnx = ORTSession(onnx_compile(pangu, tmp_path / "onnx"))
    tvm = TVMSession(tvm_compile(pangu, tmp_path / "tvm", target="tvm-llvm"))
    torch_run = numpy_runner(to_torch(pangu))
    forwards = {
        "onnx": onnx.forward,
        "tvm": tvm.forward,
        "torch": lambda ids, **kw: lm.forward(torch_run, lm.graph_inputs(pangu), ids, **kw),
    }
    for name, fwd in forwards.items():
        for domain in (1, np.array([1, 0])):
            for decode in (False, True):
                np.testing.assert_allclose(
                    fwd(IDS, decode=decode, domain=domain),
                    lm.interpret(pangu, IDS, decode=decode, domain=domain),
                    rtol=1e-4,
                    atol=1e-4,
                    err_msg=f"{name} domain={domain} decode={decode}",
                )
    want = InterpreterSession(pangu).generate([list(IDS[0, :5])], 6, domain=1)
    assert onnx.generate([list(IDS[0, :5])], 6, domain=1) == want
    assert tvm.generate([list(IDS[0, :5])], 6, domain=1) == want


def test_domain_ids_are_checked(pangu):
    session = InterpreterSession(pangu)
    with pytest.raises(InputError, match="domain_ids"):
        session.forward(IDS, domain=2)
    llama = InterpreterSession(model_zoo.build("llama-2", size="tiny"))
    with pytest.raises(ConfigError, match="only models with random routed experts take a domain"):
        llama.generate([[1, 2]], 2, domain=1)


def test_cli_domain(pangu, tmp_path):
    pangu.save(tmp_path / "p")
    runner = CliRunner()
    args = ["generate", str(tmp_path / "p"), "--prompt-ids", "5,6,7", "-n", "4", "--ids-only"]
    one = runner.invoke(main, [*args, "--domain", "1"])
    assert one.exit_code == 0, one.output
    want = InterpreterSession(pangu).generate([[5, 6, 7]], 4, domain=1)[0]
    assert one.output.split() == [str(t) for t in want]
    bad = runner.invoke(main, [*args, "--domain", "2"])
    assert bad.exit_code == 2 and "expected a domain id in 0..1, got 2" in bad.output
    run = runner.invoke(main, ["run", str(tmp_path / "p"), "--ids", "5,6", "--domain", "1"])
    assert run.exit_code == 0, run.output
    llama = tmp_path / "l"
    model_zoo.build("llama-2", size="tiny").save(llama)
    r = runner.invoke(main, ["run", str(llama), "--ids", "5,6", "--domain", "1"])
    assert r.exit_code == 2 and "only models with random routed experts" in r.output
    assert "Traceback" not in r.output
