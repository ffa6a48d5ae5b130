"""Snowflake Arctic's tiny twin against a hand-written torch Arctic
(tests/helpers/arctic_reference.py, from Snowflake's modelling code; transformers has no Arctic
class): prefill and cached decode within 1e-5, the dense residual MLP as wide as the model
(issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph
from irgraph import model_zoo
from tests.helpers import arctic_reference

torch = pytest.importorskip("torch")
IDS = np.array([[5, 17, 99, 200, 3, 42, 7, 8, 250, 1], [9, 0, 31, 64, 128, 2, 77, 5, 5, 190]])


@pytest.fixture(scope="module")
def twin():
    cfg = model_zoo.config("snowflake-arctic", "tiny")
    graph = model_zoo.build("snowflake-arctic", seed=5)
    return cfg, graph, arctic_reference.from_graph(cfg, graph)


def test_the_residual_mlp_is_as_wide_as_the_model(twin):
    cfg, graph, _ = twin
    published = model_zoo.config("snowflake-arctic")
    assert published.ffn == published.hidden == 7168 and published.moe.expert_ffn == 4864
    assert graph.params["layers.0.mlp.up.weight"].type.shape == (cfg.hidden, cfg.hidden)
    assert cfg.moe.expert_ffn != cfg.hidden  # the twin still tells the two widths apart


@pytest.mark.parametrize("decode", [False, True], ids=["prefill", "cached-decode"])
def test_tiny_arctic_matches_the_torch_reference(twin, decode):
    cfg, graph, reference = twin
    want = arctic_reference.logits(reference, IDS, decode)
    assert want.std() > 0.05, "degenerate logits would hide wiring errors"
    got = irgraph.interpret(graph, IDS, decode=decode)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
