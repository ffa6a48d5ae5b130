"""Translation validation: run a graph before and after a pass in the interpreter and compare.

Two modes (a pass picks one with its `check_mode`; the CLI may override it):

random-io: inputs are random but meaningful for language models (lm.py
conventions): token ids inside the vocabulary, positions that continue the
cache, an all-ones attention mask, random KV caches. Two cases run: a prefill
(past = 0, seq = 3) and a decode step with a nonempty cache (past = 3, seq = 1),
batch 2 in both, and every output is compared. The strictest check for passes
that keep the interface, since random caches reach every path; it cannot
compare graphs whose inputs differ (a rewritten cache).

end-to-end: the same random token ids go into both graphs, a prefill of 3
tokens then `steps` decode steps, each graph keeping its own KV cache, and the
logits are compared at every step. Caches and other internal outputs may
differ in shape or layout, so passes that rewrite the cache or prune heads can
be checked.

The error is max |after - before| / max(1, max |before|) over the compared outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import PassError
from irgraph.interpreter import run
from irgraph.ir import Graph, Value
from irgraph.kvcache import require_drivable
from irgraph.lm import (
    CACHE_STATE,
    LOGITS,
    LOGITS_LAST,
    PAST_PREFIX,
    cache_inputs,
    empty_cache,
    graph_inputs,
    is_encoder_decoder,
    make_feeds,
    present_name,
)
from irgraph.passes.context import Progress, no_progress
from irgraph.registry import get_op
from irgraph.types import TensorType

RANDOM_IO = "random-io"
END_TO_END = "end-to-end"
CHECK_MODES = (RANDOM_IO, END_TO_END)
DECODE_STEPS = 4  # end-to-end: decode steps after the prefill
E2E_BATCH, E2E_PROMPT = 2, 3

CASES: dict[str, dict[str, int]] = {
    "prefill": {"batch": 2, "seq": 3, "past": 0},
    "decode": {"batch": 2, "seq": 1, "past": 3},
}
OTHER_DIM = 3  # any other symbolic dim (encoder length, ...)


@dataclass(frozen=True)
class Comparison:
    max_error: float
    worst: str  # "output 'logits' (decode): max error 3.1e-07"


def _index_bound(graph: Graph, v: Value) -> int | None:
    """The tightest bound of an integer input used as an index (the ops' `indices` traits)."""
    bounds = []
    for node in graph.nodes:
        opdef = get_op(node.op)
        if not opdef.indices:
            continue
        types = [x.type if x is not None else None for x in node.inputs]
        for slot, bound in opdef.index_bounds(types, node.attrs).items():
            if node.inputs[slot] is v:
                bounds.append(bound)
    ints = [b for b in bounds if isinstance(b, int)]
    return min(ints) if ints else None


def random_feeds(
    graph: Graph, dims: Mapping[str, int], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One random feed per graph input, with symbolic dims bound from `dims`."""
    feeds: dict[str, np.ndarray] = {}
    for name, v in graph.inputs.items():
        shape = tuple(_concrete(v.type, dims))
        dtype = v.type.dtype.numpy
        if v.type.dtype.is_float:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif name == "position_ids":
            pos = dims.get("past", 0) + np.arange(shape[-1])
            feeds[name] = np.broadcast_to(pos, shape).astype(dtype).copy()
        elif name in ("attention_mask", "encoder_attention_mask") or v.type.dtype is DType.bool:
            feeds[name] = np.ones(shape, dtype=dtype)
        elif name == "prefix_len":
            feeds[name] = np.full(shape, dims.get("past", 0) + dims.get("seq", 1), dtype=dtype)
        else:
            bound = _index_bound(graph, v) or 1
            feeds[name] = rng.integers(0, bound, size=shape).astype(dtype)
    return feeds


def _concrete(t: TensorType, dims: Mapping[str, int]) -> list[int]:
    env = dict(dims)
    for d in t.shape:
        if not isinstance(d, int):
            for sym, _ in d.terms:
                env.setdefault(sym, OTHER_DIM)
    return list(t.concrete(env))


def compare(
    before: Graph,
    after: Graph,
    *,
    seed: int = 0,
    mode: str = RANDOM_IO,
    steps: int = DECODE_STEPS,
    progress: Progress = no_progress,
) -> Comparison:
    """The largest relative error of `after` against `before` in check `mode` (see above)."""
    _need_weights(before)
    if mode == END_TO_END:
        return compare_end_to_end(before, after, seed=seed, steps=steps, progress=progress)
    if mode != RANDOM_IO:
        raise PassError("unknown check mode", expected=" | ".join(CHECK_MODES), got=mode)
    return compare_random_io(before, after, seed=seed)


def compare_random_io(before: Graph, after: Graph, *, seed: int = 0) -> Comparison:
    """Run both graphs on the same random inputs (CASES) and return the largest relative error."""
    _need_weights(before)
    in_b, in_a = graph_inputs(before), graph_inputs(after)
    added = [n for n in after.outputs if n not in before.outputs]  # last-position-logits' one
    if (
        in_b != in_a
        or [n for n in after.outputs if n not in added] != list(before.outputs)
        or (added and (added != [LOGITS_LAST] or LOGITS not in before.outputs))
    ):
        changed = sorted(n for n in in_b.keys() | in_a.keys() if in_b.get(n) != in_a.get(n))
        shown = changed[0] if changed else "outputs"
        raise PassError(
            "the pass changed the graph's interface (inputs or outputs), and the random-io "
            "check feeds both graphs the same inputs; check it end to end instead "
            "(check_mode end-to-end, --check-mode end-to-end)",
            expected=f"{shown}: {in_b.get(shown)}" if changed else list(before.outputs),
            got=f"{shown}: {in_a.get(shown)}" if changed else list(after.outputs),
        )
    worst, where = 0.0, "no difference"
    for case, dims in CASES.items():
        feeds = random_feeds(before, dims, np.random.default_rng(seed))
        ref = run(before, feeds)
        got = run(after, feeds)
        if added:  # last-position-logits: logits_last is the last row of the logits
            ref[LOGITS_LAST] = ref[LOGITS][:, -1:]
        for name, r in ref.items():
            g = got[name]
            if r.shape != g.shape:
                return Comparison(
                    float("inf"), f"output {name!r} ({case}) changed shape {r.shape} -> {g.shape}"
                )
            err = _relative_error(r, g)
            if err > worst or (err != err):
                worst, where = err, f"output {name!r} ({case}): max error {err:.3g}"
    return Comparison(worst, where)


def compare_end_to_end(
    before: Graph,
    after: Graph,
    *,
    seed: int = 0,
    steps: int = DECODE_STEPS,
    progress: Progress = no_progress,
) -> Comparison:
    """Decode the same random ids with both graphs, each with its own cache; compare the logits.

    The step named in `worst` is where the error is largest: "prefill" (the
    3-token prompt) or "decode step k" (the k-th token after it).
    """
    _need_weights(before)
    for graph in (before, after):
        _need_language_model(graph)
    tokens_b = {n: t for n, t in graph_inputs(before).items() if not _cache_state(n)}
    tokens_a = {n: t for n, t in graph_inputs(after).items() if not _cache_state(n)}
    if tokens_b != tokens_a:
        raise PassError(
            "the pass changed inputs other than the KV cache, so the same ids cannot drive both",
            expected=sorted(f"{n}: {t}" for n, t in tokens_b.items()),
            got=sorted(f"{n}: {t}" for n, t in tokens_a.items()),
        )
    vocab = before.outputs["logits"].type.shape[-1]
    if not isinstance(vocab, int):
        raise PassError("the logits' vocabulary dim is not a number", got=str(vocab))
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(E2E_BATCH, E2E_PROMPT + steps), dtype=np.int64)
    encoder_ids = rng.integers(0, vocab, size=(E2E_BATCH, E2E_PROMPT), dtype=np.int64)
    ref, got = _Decoder(before, encoder_ids), _Decoder(after, encoder_ids)
    worst, where = 0.0, "no difference"
    bounds = [0, *range(E2E_PROMPT, E2E_PROMPT + steps + 1)]
    for step, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        label = "prefill" if step == 0 else f"decode step {step}"
        r, g = ref.step(ids, lo, hi), got.step(ids, lo, hi)
        if r.shape != g.shape:
            return Comparison(
                float("inf"), f"logits ({label}) changed shape {r.shape} -> {g.shape}"
            )
        err = _relative_error(r, g)
        if err > worst or (err != err):
            worst, where = err, f"logits at {label}: max error {err:.3g}"
        progress(step + 1, steps + 1, "end-to-end")
    return Comparison(worst, where)


def _cache_state(name: str) -> bool:
    """An input make_feeds derives from the cache (so a cache rewrite may change it)."""
    return name.startswith(PAST_PREFIX) or name in CACHE_STATE


class _Decoder:
    """One graph decoding token by token through its own KV cache (lm.py conventions).

    A graph without cache inputs reruns the whole sequence and keeps the new positions.
    """

    def __init__(self, graph: Graph, encoder_ids: np.ndarray):
        self.graph, self.inputs = graph, graph_inputs(graph)
        self.encoder_ids = encoder_ids
        self.cache = empty_cache(self.inputs, E2E_BATCH)
        self.cached = bool(self.cache)

    def step(self, ids: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Logits [batch, hi - lo, vocab] for tokens lo..hi-1, given that 0..lo-1 were fed."""
        past = lo if self.cached else 0
        feeds = make_feeds(
            self.inputs,
            ids[:, past:hi],
            self.cache,
            past_len=past,
            encoder_ids=self.encoder_ids,
            prefix_len=np.full((E2E_BATCH,), E2E_PROMPT, dtype=np.int64),
        )
        out = run(self.graph, feeds)
        self.cache = {name: np.asarray(out[present_name(name)]) for name in self.cache}
        return np.asarray(out["logits"])[:, lo - past :]


def _need_weights(graph: Graph) -> None:
    if graph.weights is None:
        raise PassError(
            "cannot check equivalence of a structure-only graph (it has no weights)",
            where=f"graph {graph.name!r}",
        )


def _need_language_model(graph: Graph) -> None:
    """The end-to-end check drives the graph as a language model: logits out, caches paired."""
    require_drivable(graph.meta, f"graph {graph.name!r}", graph_inputs(graph))
    inputs = graph_inputs(graph)
    token = "decoder_input_ids" if is_encoder_decoder(inputs) else "input_ids"
    missing = [n for n in (token,) if n not in inputs]
    missing += [n for n in ("logits",) if n not in graph.outputs]
    missing += [
        present_name(n) for n in cache_inputs(inputs) if present_name(n) not in graph.outputs
    ]
    if missing:
        raise PassError(
            "the end-to-end check needs a language-model graph (lm.py conventions)",
            expected=f"{token}, logits and a present.* output for every past_key_values.* input",
            got="missing " + ", ".join(missing),
            where=f"graph {graph.name!r}",
        )


def _relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    """max |got - ref| / max(1, max |ref|); inf when the two have NaNs in different places."""
    if not ref.size:
        return 0.0
    r64, g64 = ref.astype(np.float64), got.astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(r64))))
    err = float(np.nanmax(np.abs(g64 - r64))) / scale
    return float("inf") if np.isnan(g64).sum() != np.isnan(r64).sum() else err


def check_equivalent(
    before: Graph,
    after: Graph,
    *,
    tolerance: float = 1e-5,
    seed: int = 0,
    mode: str = RANDOM_IO,
) -> float:
    """The max error of `after` against `before`; PassError when above `tolerance`."""
    cmp = compare(before, after, seed=seed, mode=mode)
    if not cmp.max_error <= tolerance:
        raise PassError(
            f"graphs differ: {cmp.worst}",
            expected=f"max error <= {tolerance:g}",
            got=f"{cmp.max_error:.3g}",
        )
    return cmp.max_error
