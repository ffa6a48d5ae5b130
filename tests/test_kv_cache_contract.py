"""The KV-cache contract (irgraph/kvcache.py): stated in graph meta, copied into manifests,
refused by the generate loops where they cannot drive it yet."""

from __future__ import annotations

import pytest

from irgraph import IRError
from irgraph.kvcache import CacheContract, contract_of, manifest_entry, with_contract
from irgraph.lm import graph_inputs, interpret
from irgraph.runtimes.interpreter import InterpreterSession
from tests.helpers.handbuilt import tiny_llama


def test_graphs_without_contract_meta_are_concat_bnsh():
    g = tiny_llama()
    assert contract_of(g.meta) == CacheContract()
    entry = manifest_entry(g.meta, graph_inputs(g))
    assert (entry["layout"], entry["storage"], entry["dtypes"]) == ("bnsh", "concat", ["f32"])
    assert entry["seq_axis"]["past_key_values.1.value"] == 2
    assert entry["present"][0] == "present.0.key"


def test_contract_round_trips_through_meta_and_the_text_form():
    from irgraph.parser import parse

    ring = CacheContract(layout="bsnh", storage="ring", window=8)
    g = tiny_llama()
    g.meta = with_contract(g.meta, ring)
    assert g.meta["kv_cache_window"] == 8 and "kv_cache_block" not in g.meta
    assert contract_of(parse(str(g)).meta) == ring
    assert ring.seq_axis("past_key_values.0.key") == 1 and ring.heads_axis("x.key") == 2
    assert CacheContract().seq_axis("past_key_values.0.latent") == 1
    assert with_contract(g.meta, CacheContract()).keys() == tiny_llama().meta.keys()


@pytest.mark.parametrize(
    "meta, says",
    [
        ({"kv_cache_layout": "nhsb"}, "unknown KV-cache layout"),
        ({"kv_cache_storage": "ring"}, "a ring cache needs window > 0"),
        ({"kv_cache_window": 4}, "only a ring cache has one"),
        ({"kv_cache_storage": "paged", "kv_cache_block": -16}, "whole number of tokens"),
        ({"kv_cache_dtype": "i8"}, "unknown KV-cache meta key"),
    ],
)
def test_bad_contract_meta_is_one_clear_error_naming_the_key(meta, says):
    with pytest.raises(IRError, match=says):
        contract_of(meta)


def test_generate_loops_refuse_a_contract_the_inputs_do_not_match():
    g = tiny_llama()
    g.meta = with_contract(g.meta, CacheContract(storage="paged", block=16))
    session = InterpreterSession(g)
    for call in (lambda: session.generate([[1, 2]], 2), lambda: session.forward([[1, 2]])):
        with pytest.raises(IRError, match="says its KV cache is paged, but its inputs"):
            call()
    # the contract is about storage: the graph's own prefill still runs in the interpreter
    assert interpret(g, [[1, 2]]).shape[:2] == (1, 2)
