"""paged-kv: the cache in fixed-size pages with a block table; rows of different lengths
decode in one batch without padding, exact vs the concat cache on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import irgraph.model_zoo as zoo
from irgraph import InputError, PassError
from irgraph.analysis import kv_bytes_per_token
from irgraph.kvcache import contract_of, manifest_entry
from irgraph.lm import graph_inputs, interpret
from irgraph.passes import run_pipeline
from irgraph.runtimes.interpreter import InterpreterSession
from irgraph.runtimes.paged import PagedDecoder, PagePool

PROMPTS = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [1, 2], [3, 4, 5, 6, 7]]


@pytest.fixture(scope="module")
def pair():
    g = zoo.build("llama-2", size="tiny")
    result = run_pipeline(g, "paged-kv(block=4)", check=True, check_steps=16)
    (record,) = result.records
    assert record.modified and record.max_error is not None and record.max_error <= 1e-5
    return g, result.graph


def test_pools_block_table_and_contract(pair):
    g, paged = pair
    text = str(paged)
    assert "input %past_key_values.0.key: f32[pages, 4, 2, 16]" in text
    assert "input %block_table: i64[batch, blocks]" in text and "attention_mask" not in text
    assert contract_of(paged.meta).storage == "paged" and contract_of(paged.meta).block == 4
    entry = manifest_entry(paged.meta, graph_inputs(paged))
    assert (entry["storage"], entry["block"]) == ("paged", 4)
    assert kv_bytes_per_token(paged, None) == kv_bytes_per_token(g, None)
    ids = np.random.default_rng(0).integers(0, 256, size=(2, 11))
    np.testing.assert_allclose(
        interpret(paged, ids, decode=True), interpret(g, ids, decode=True), atol=1e-5
    )


def test_rows_of_different_lengths_share_the_pool_without_padding(pair):
    g, paged = pair
    session = InterpreterSession(paged)
    calls = []
    step = session.step
    session.step = lambda feeds: calls.append(feeds) or step(feeds)  # type: ignore[method-assign]
    assert session.generate(PROMPTS, 10) == InterpreterSession(g).generate(PROMPTS, 10)
    prefills = [c["input_ids"].shape for c in calls[:3]]
    assert prefills == [(1, 9), (1, 2), (1, 5)]  # each prompt alone, unpadded
    last = calls[-1]
    assert last["input_ids"].shape == (3, 1)  # one batch for the decode
    assert last["cache_lens"].tolist() == [17, 10, 13]
    pages = last["block_table"]
    used = [set(pages[r, : -(-(n + 1) // 4)]) for r, n in enumerate([17, 10, 13])]
    assert not (used[0] & used[1] or used[0] & used[2] or used[1] & used[2])  # disjoint
    assert used[0] != set(range(min(used[0]), max(used[0]) + 1))  # interleaved as rows grew


@pytest.mark.parametrize("target", ["onnx-ort", "onnx-portable", "tvm"])
def test_backends_match_the_interpreter(pair, target, tmp_path):
    _, paged = pair
    if target == "tvm":
        from irgraph.codegen.tvm import compile_graph
        from irgraph.runtimes.tvm import TVMSession as Session

        session = Session(compile_graph(paged, tmp_path / "a"))
    else:
        from irgraph.codegen.onnx import compile_graph
        from irgraph.runtimes.onnx import ORTSession as Session

        session = Session(compile_graph(paged, tmp_path / "a", flavour=target.split("-")[1]))
    ids = np.random.default_rng(1).integers(0, 256, size=(2, 9))
    np.testing.assert_allclose(
        session.forward(ids, decode=True), interpret(paged, ids, decode=True), atol=1e-4
    )
    assert session.generate(PROMPTS, 6) == InterpreterSession(paged).generate(PROMPTS, 6)


def test_bad_tables_and_pools_are_clear_errors(pair):
    _, paged = pair
    session = InterpreterSession(paged)
    decoder = PagedDecoder(session, [[1, 2]], 2, {})
    decoder.prefill()
    feeds = {
        "input_ids": np.array([[3]]),
        "position_ids": np.array([[2]]),
        **decoder.cache,
        "cache_lens": np.array([2]),
        "block_table": np.array([[99]]),
    }
    with pytest.raises(InputError, match="'block_table': page out of range"):
        session.run(feeds)
    with pytest.raises(InputError, match="do not fit the row's pages"):
        session.run({**feeds, "block_table": np.array([[0]]), "cache_lens": np.array([4])})
    pool = PagePool(1, 4)
    pool.reserve(0, 4)
    with pytest.raises(Exception, match="out of pages"):
        pool.reserve(1, 1)
    with pytest.raises(
        PassError, match=r"option .block. of pass paged-kv \(expected int, 1 <= block"
    ):
        run_pipeline(paged, "paged-kv(block=0)")


def test_graphs_it_does_not_apply_to_say_why(pair):
    (record,) = run_pipeline(zoo.build("deepseek-v2"), "paged-kv").records
    assert not record.modified and "latent cache" in record.note
    g, paged = pair
    (record,) = run_pipeline(paged, "paged-kv").records
    assert not record.modified and "already paged" in record.note
    bsnh = run_pipeline(g, "kv-layout(layout=bsnh)").graph
    with pytest.raises(PassError, match="paged-kv rewrites a concat bnsh cache"):
        run_pipeline(bsnh, "paged-kv")
