"""PassContext (calibration, seed, progress, providers), validated options, and pure imports."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import irgraph.passes
from irgraph import PassError
from irgraph.ir import Graph
from irgraph.lm import interpret
from irgraph.passes import (
    PASSES,
    Pass,
    PassContext,
    PassResult,
    load_calibration,
    option,
    option_specs,
    parse_pipeline,
    run_pipeline,
)
from irgraph.passes.constant_fold import ConstantFold
from irgraph.passes.merge_lora import MergeLora
from irgraph.weights import WeightStore
from tests.helpers.handbuilt import tiny_llama

BACKENDS = ("torch", "onnx", "onnxruntime", "tvm")


@dataclass(frozen=True)
class Scores(Pass):
    """A data-dependent pass in miniature: asks for calibration data and gradients, reports."""

    name = "scores"
    mode: str = option("grad", choices=("grad", "none"), doc="where scores come from")
    keep: float = option(0.5, min=0.0, max=1.0, doc="fraction kept")
    seen: ClassVar[list[object]] = []

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        batches = ctx.need_calibration(self)
        for i in range(len(batches)):
            ctx.progress(i + 1, len(batches), "batches")
        if self.mode == "grad":
            self.seen.append(ctx.need_gradients(self).gradients(graph, batches))
        self.seen.append(ctx.seed)
        return PassResult(graph, False)


class FakeGradients:
    def gradients(self, graph, batches):
        return {"lm_head.weight": np.full((2,), float(len(batches)))}


def ids(*shape: int) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 64


def test_a_pass_gets_calibration_seed_progress_and_providers():
    Scores.seen.clear()
    reports: list[tuple[int, int, str]] = []
    ctx = PassContext(
        calibration=[ids(2, 5), ids(1, 5)],
        seed=3,
        progress=lambda *r: reports.append(r),
        gradients=FakeGradients(),
    )
    run_pipeline(tiny_llama(), [Scores()], ctx=ctx, seed=7)
    assert reports == [(1, 2, "scores: batches"), (2, 2, "scores: batches")]
    assert Scores.seen[0]["lm_head.weight"].tolist() == [2.0, 2.0] and Scores.seen[1] == 7


def test_a_missing_provider_or_calibration_names_the_pass():
    with pytest.raises(PassError) as e:
        run_pipeline(tiny_llama(), [Scores()], ctx=PassContext(calibration=[ids(1, 4)]))
    assert "pass scores (after: none): failed: pass scores needs the 'gradients' provider" in str(
        e.value
    )
    with pytest.raises(PassError, match="pass scores needs calibration data"):
        run_pipeline(tiny_llama(), [Scores(mode="none")])
    with pytest.raises(
        PassError, match=r"calibration batch 1 .*expected int64 array \[batch, seq\]"
    ):
        PassContext(calibration=[ids(1, 4), np.zeros((1, 4), np.float32)])


def test_calibration_loads_a_folder_of_token_id_files(tmp_path):
    np.save(tmp_path / "b.npy", np.arange(6, dtype=np.int32).reshape(2, 3))
    np.save(tmp_path / "a.npy", np.arange(4, dtype=np.int64))
    batches = load_calibration(tmp_path)
    assert [b.shape for b in batches] == [(1, 4), (2, 3)]
    assert all(b.dtype == np.int64 for b in batches)
    assert PassContext(calibration=batches).calibration[1].tolist() == [[0, 1, 2], [3, 4, 5]]
    np.save(tmp_path / "c.npy", np.ones((2, 3), np.float32))
    with pytest.raises(PassError, match=r"does not hold token ids .*got float32\[2, 3\]"):
        load_calibration(tmp_path)
    with pytest.raises(PassError, match="no calibration batches found"):
        load_calibration(tmp_path / "missing")


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            "constant-fold(max_elements=-1)",
            "option 'max_elements' of pass constant-fold (expected int, 0 <= max_elements, got "
            "'-1')",
        ),
        ("merge-lora(alpha=-2)", "option 'alpha' of pass merge-lora (expected float, 0 <= alpha"),
    ],
)
def test_options_out_of_range_are_refused_when_parsed(spec, message):
    with pytest.raises(PassError) as e:
        parse_pipeline(spec)
    assert message in str(e.value)


def test_options_are_checked_when_a_pass_is_built_in_python():
    with pytest.raises(PassError, match="expected int, 0 <= max_elements, got -1"):
        ConstantFold(max_elements=-1)
    with pytest.raises(PassError, match="expected int, got True"):
        ConstantFold(max_elements=True)
    assert MergeLora(alpha=2).alpha == 2.0 and isinstance(MergeLora(alpha=2).alpha, float)
    with pytest.raises(
        PassError, match=r"option 'keep' of pass scores \(expected float, 0 <= keep <= 1"
    ):
        Scores(keep=1.5)
    with pytest.raises(
        PassError,
        match="option 'mode' of pass scores .expected str, one of grad, none, got 'hessian'",
    ):
        Scores(mode="hessian")
    assert Scores(keep=1, mode="none").keep == 1.0


def test_every_option_declares_its_doc_and_shows_it():
    specs = {(name, s.name): s for name, cls in PASSES.items() for s in option_specs(cls)}
    assert specs and all(s.doc for s in specs.values())
    assert all(str(cls()) == name for name, cls in PASSES.items())  # defaults are in range
    fold = specs[("constant-fold", "max_elements")]
    assert fold.min == 0 and fold.describe().startswith(
        "max_elements: int = 16777216 [0 <= max_elements]  "
    )
    assert (
        option_specs(Scores)[0].describe()
        == "mode: str = grad [one of grad, none]  where scores come from"
    )


@pytest.mark.slow  # loads the torch backend (~30 s on a busy CPU)
def test_torch_gradients_match_finite_differences():
    from irgraph.cli.providers import TorchGradients

    g = tiny_llama()
    windows = np.random.default_rng(0).integers(0, 64, size=(2, 6))
    grads = TorchGradients().gradients(g, [windows])
    assert set(grads) == set(g.params)
    assert all(grads[n].shape == tuple(g.params[n].type.shape) for n in grads)

    def loss(weights) -> float:
        graph = Graph(g.name, g.inputs, g.params, g.nodes, g.outputs, g.meta, weights)
        logits = interpret(graph, windows[:, :-1]).astype(np.float64)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return float(-np.take_along_axis(logp, windows[:, 1:, None], -1).mean())

    name = "layers.1.up.weight"
    i = np.unravel_index(np.argmax(np.abs(grads[name])), grads[name].shape)
    eps = 1e-2

    def shifted(delta: float) -> WeightStore:
        arrays = {n: np.array(g.weight(n), copy=True) for n in g.params}
        arrays[name][i] += delta
        return WeightStore(arrays)

    numeric = (loss(shifted(eps)) - loss(shifted(-eps))) / (2 * eps)
    assert abs(grads[name][i]) > 1e-3
    assert numeric == pytest.approx(float(grads[name][i]), rel=0.02)


def test_pass_modules_import_no_backend():
    """Passes never import torch, onnx or tvm: not when imported, and not inside a function."""
    modules = [f"irgraph.passes.{m.name}" for m in pkgutil.iter_modules(irgraph.passes.__path__)]
    assert "irgraph.passes.manager" in modules and len(modules) >= 10
    script = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"    bad = sorted(b for b in {BACKENDS!r} if b in sys.modules)\n"
        "    if bad: sys.exit(f'{m} imported {bad}')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for path in sorted(Path(irgraph.passes.__path__[0]).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            roots = {n.split(".")[0] for n in names}
            assert not roots & set(BACKENDS), f"{path.name}:{node.lineno} imports {sorted(roots)}"
