"""The KV-cache contract: how a graph stores its cache, so passes can rewrite it (issue 16).

The cache tensors are the graph's `past_key_values.{i}.*` inputs and `present.{i}.*`
outputs (lm.py); this contract says what they hold. It lives in the graph's meta
(`kv_cache_layout`, `kv_cache_storage`, `kv_cache_window`, `kv_cache_block`; absent
keys are the defaults, so every graph built before the contract means concat BNSH),
and artifacts copy it into the manifest's `kv_cache` entry.

  layout   bnsh   per-head caches are [batch, kv_heads, past, head_dim] (ORT GQA, genai)
           bsnh   [batch, past, kv_heads, head_dim] (the order the projections produce)
           Latent caches (`.latent`, DeepSeek-v2) are [batch, past, width] in both.
  storage  concat present = past followed by the new tokens: the cache grows every call
           ring   `window` slots reused in turn: the cache stops growing (sliding window;
                  a model's unwindowed layers, GPT-3's dense ones, keep concat caches)
           paged  blocks of `block` tokens addressed through a block table
  dtype    read from each cache input's type; a quantized cache (int8, fp8) comes with
           scale inputs `past_key_values.{i}.{key,value}_scale` beside it.

Every generate loop (lm.forward, runtimes/generate.py, the --check decoder) drives
concat caches of either layout, ring caches (fixed-size: present is fed back as past like
any other) and paged ones (lm.make_feeds feeds block_table and cache_lens;
runtimes/paged.py allocates pages as rows grow); `require_drivable` refuses a contract the
graph's inputs do not match, by name, instead of decoding garbage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from irgraph.errors import IRError
from irgraph.lm import BLOCK_TABLE, PAST_PREFIX, present_name
from irgraph.types import TensorType

LAYOUTS = ("bnsh", "bsnh")
STORAGES = ("concat", "ring", "paged")
DRIVABLE = STORAGES  # every generate loop drives each storage
META_PREFIX = "kv_cache_"
SCALE_SUFFIXES = ("_scale",)


@dataclass(frozen=True)
class CacheContract:
    """How the cache of one graph is stored (see the module docstring)."""

    layout: str = "bnsh"
    storage: str = "concat"
    window: int = 0  # ring: slots per cache
    block: int = 0  # paged: tokens per block

    def __post_init__(self) -> None:
        for key, allowed in (("layout", LAYOUTS), ("storage", STORAGES)):
            if getattr(self, key) not in allowed:
                raise IRError(
                    f"unknown KV-cache {key}",
                    expected=" | ".join(allowed),
                    got=repr(getattr(self, key)),
                    where=f"meta {META_PREFIX}{key}",
                )
        for key, storage in (("window", "ring"), ("block", "paged")):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise IRError(
                    f"KV-cache {key} must be a whole number of tokens",
                    expected=">= 0",
                    got=repr(value),
                    where=f"meta {META_PREFIX}{key}",
                )
            if (self.storage == storage) != (value > 0):
                raise IRError(
                    f"a {storage} cache needs {key} > 0, and only a {storage} cache has one",
                    expected=f"{key} > 0 with storage {storage}",
                    got=f"storage {self.storage}, {key} {value}",
                    where=f"meta {META_PREFIX}{key}",
                )

    def seq_axis(self, past_name: str) -> int:
        """The axis of cache input `past_name` that grows with the tokens (a page's tokens
        for a paged pool [pages, block, kv_heads, head_dim])."""
        if past_name.endswith(".latent") or self.layout == "bsnh" or self.storage == "paged":
            return 1
        return 2

    def heads_axis(self, past_name: str) -> int | None:
        """The kv-heads axis of a per-head cache; None for a latent cache."""
        if past_name.endswith(".latent"):
            return None
        return 2 if self.layout == "bsnh" else 1

    def meta(self) -> dict[str, Any]:
        """The graph-meta entries that state this contract (defaults left out)."""
        default = CacheContract()
        return {
            META_PREFIX + f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }


def contract_of(meta: Mapping[str, Any]) -> CacheContract:
    """The contract stated in a graph's meta; IRError naming the key on a bad or unknown one."""
    names = {f.name for f in fields(CacheContract)}
    values: dict[str, Any] = {}
    for key, value in meta.items():
        if not key.startswith(META_PREFIX):
            continue
        field = key[len(META_PREFIX) :]
        if field not in names:
            raise IRError(
                "unknown KV-cache meta key",
                expected=", ".join(META_PREFIX + n for n in sorted(names)),
                got=key,
            )
        values[field] = value
    return CacheContract(**values)


def with_contract(meta: Mapping[str, Any], contract: CacheContract) -> dict[str, Any]:
    """`meta` with its KV-cache entries replaced by `contract`'s."""
    kept = {k: v for k, v in meta.items() if not k.startswith(META_PREFIX)}
    return {**kept, **contract.meta()}


def is_scale(past_name: str) -> bool:
    """A quantized cache's scale input (`past_key_values.0.key_scale`), not a cache itself."""
    return past_name.endswith(SCALE_SUFFIXES)


def manifest_entry(meta: Mapping[str, Any], inputs: Mapping[str, TensorType]) -> dict[str, Any]:
    """The manifest's `kv_cache` object: the contract, the names and each cache's dtype."""
    contract = contract_of(meta)
    past = [n for n in inputs if n.startswith(PAST_PREFIX)]
    entry: dict[str, Any] = {
        "layout": contract.layout,
        "storage": contract.storage,
        "past": past,
        "present": [present_name(n) for n in past],
        "past_template": "past_key_values.%d.{key,value,latent}",
        "present_template": "present.%d.*",
        "seq_axis": {n: contract.seq_axis(n) for n in past if not is_scale(n)},
        "dtypes": sorted({str(inputs[n].dtype) for n in past if not is_scale(n)}),
    }
    if contract.window:
        entry["window"] = contract.window
    if contract.block:
        entry["block"] = contract.block
    return entry


def require_drivable(
    meta: Mapping[str, Any], where: str, inputs: Mapping[str, TensorType] | None = None
) -> CacheContract:
    """The contract, or IRError when no generate loop drives its storage, or when `inputs`
    (the graph's) are not the cache it states (a paged contract without a block table, a
    ring whose caches do not hold `window` slots)."""
    contract = contract_of(meta)
    if contract.storage not in DRIVABLE:
        raise IRError(
            f"the graph stores its KV cache as {contract.storage}, which the generate loops "
            "do not drive yet",
            expected=" | ".join(DRIVABLE),
            got=contract.storage,
            where=where,
        )
    if inputs is None:
        return contract
    caches = {n: t for n, t in inputs.items() if n.startswith(PAST_PREFIX) and not is_scale(n)}
    paged = BLOCK_TABLE in inputs
    # windowed layers hold `window` slots; unwindowed ones (GPT-3's dense layers) keep growing
    ring_ok = any(t.shape[contract.seq_axis(n)] == contract.window for n, t in caches.items())
    if (contract.storage == "paged") != paged or (contract.storage == "ring" and not ring_ok):
        raise IRError(
            f"the graph's contract says its KV cache is {contract.storage}, but its inputs "
            "are not such a cache",
            expected={
                "paged": "a block_table input and page pools",
                "ring": f"caches of {contract.window} slots",
            }.get(contract.storage, "no block_table input"),
            got=", ".join(f"{n}: {t}" for n, t in list(caches.items())[:1])
            + (", block_table" if paged else ""),
            where=where,
        )
    return contract
