"""quantize-kv(dtype=int8|fp8_e4m3, granularity=per-head|per-channel|per-token): int8/fp8 KV cache.

Each cached attention's new keys and values go through `kv_quantize` (irgraph/ops/kv_quant.py)
into the cache in `dtype`; the cache input `past_key_values.{i}.key` is retyped to it and,
for the dynamic granularities, a scale cache `past_key_values.{i}.key_scale` (f32, one scale per
token and head, or per token) grows beside it (`present.{i}.key_scale`). Attention reads the
dequantized cache, cast(q, f32) · scale, for every position, the current tokens' included, so
prefill and decode see the same numbers:

    kq, ks = kv_quantize(k)                     # k [b, s, h, d] -> i8 [b, h, s, d], f32 scale
    present.{i}.key       = concat(past.key, kq)        (stored, grows by s)
    present.{i}.key_scale = concat(past.key_scale, ks)
    attention(q, transpose(cast(kq) · ks), ..., past = cast(past.key) · past.key_scale)

(attention concatenates the dequantized past and new tokens, which is the dequantized present:
the cached form, so ORT's GroupQueryAttention and TVM's cache kernels still run it.)

per-channel scales are static ([1, kv_heads, 1, head_dim] parameters `kv_cache.{i}.key_scale`):
max |k| per channel over the calibration tokens (`--calibration`) / QMAX; later values beyond
that range saturate. Approximate: the error is reported, not bounded. Checked end to end (the
cache types change). Run it after kv-layout (or on a bnsh cache): it rewrites attention whose
cache inputs and outputs are the attention's own; latent caches are left alone, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import PassError
from irgraph.ir import Graph, Node, Value
from irgraph.kvcache import contract_of, is_scale
from irgraph.lm import PAST_PREFIX, PRESENT_PREFIX, present_name
from irgraph.ops.kv_quant import FLOOR, GRANULARITIES, QMAX
from irgraph.passes.cache_sites import cache_names
from irgraph.passes.calibrate import evaluate, feeds_for
from irgraph.passes.context import PassContext
from irgraph.passes.equivalence import END_TO_END
from irgraph.passes.graphs import GraphIndex
from irgraph.passes.manager import APPROXIMATE, Pass, PassResult, option, register_pass
from irgraph.passes.rewrite import Rewriter
from irgraph.types import TensorType

DTYPES = {"int8": DType.i8, "fp8_e4m3": DType.f8e4m3}
TO_BSNH = (0, 2, 1, 3)


@dataclass(frozen=True)
class _Site:
    node: Node
    names: tuple[str, str]  # past_key_values.{i}.key / .value


@register_pass
@dataclass(frozen=True)
class QuantizeKv(Pass):
    name = "quantize-kv"
    kind = APPROXIMATE
    summary = "store the KV cache in int8 or fp8 with scales; attention reads it dequantized"
    check_mode: ClassVar[str] = END_TO_END
    dtype: Literal["int8", "fp8_e4m3"] = option("int8", choices=tuple(DTYPES), doc="cache dtype")
    granularity: Literal["per-head", "per-channel", "per-token"] = option(
        "per-head", choices=GRANULARITIES, doc="what one scale covers"
    )

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        sites, skipped = _sites(graph)
        if not sites:
            why = skipped[0] if skipped else "the graph has no per-head KV cache"
            return PassResult(graph, False, f"nothing to quantize: {why}")
        static = self._static_scales(graph, sites, ctx) if self.granularity == "per-channel" else {}
        dtype = DTYPES[self.dtype]
        retyped: dict[str, Value] = {}  # cache inputs in `dtype`, and the scale caches
        for site in sites:
            for name in site.names:
                old = graph.inputs[name]
                retyped[name] = Value(old.type.with_dtype(dtype), hint=old.hint)
                if name not in static:
                    b, h, past = old.type.shape[:3]
                    heads = h if self.granularity == "per-head" else 1
                    retyped[name + "_scale"] = Value(
                        TensorType(DType.f32, (b, heads, past, 1)), hint=f"{old.hint}_scale"
                    )
        inputs: dict[str, Value] = {}
        for name, value in graph.inputs.items():  # each scale cache right after its cache
            inputs[name] = retyped.get(name, value)
            if name + "_scale" in retyped:
                inputs[name + "_scale"] = retyped[name + "_scale"]
        staged = Graph(graph.name, inputs, graph.params, graph.nodes, graph.outputs, graph.meta)
        staged.weights = graph.weights
        rw = Rewriter(staged)
        presents: dict[str, Value] = {}
        for site in sites:
            att = site.node
            rw.at(att)
            news, pasts = [], []  # dequantized: this call's tokens (BSNH), the cache (BNSH)
            for slot, name in enumerate(site.names):
                scale = None
                if name in static:
                    scale = rw.param(
                        f"kv_cache.{name[len(PAST_PREFIX) :]}_scale",
                        TensorType(DType.f32, static[name].shape),
                        static[name],
                    )
                q, s = rw.emit(
                    "kv_quantize",
                    att.arg(1 + slot),
                    scale,
                    dtype=dtype.value,
                    granularity=self.granularity,
                )
                presents[name] = rw.emit("concat", retyped[name], q, axis=2)
                past_scale = scale if scale is not None else retyped[name + "_scale"]
                if scale is None:
                    presents[name + "_scale"] = rw.emit("concat", past_scale, s, axis=2)
                new = rw.emit("mul", rw.emit("cast", q, dtype="f32"), s)
                news.append(rw.emit("transpose", new, perm=TO_BSNH))
                past = rw.emit("cast", retyped[name], dtype="f32")
                pasts.append(rw.emit("mul", past, past_scale))
            # attention concatenates the dequantized cache and tokens as it would the stored
            # ones (dequantizing commutes with concat): the cached form backends fuse (ORT GQA)
            ins = (att.arg(0), *news, *pasts, *att.inputs[5:])
            rw.replace(att.outputs[0], rw.emit("attention", *ins, **att.attrs)[0])
        outputs: dict[str, Value] = {}
        for name, value in graph.outputs.items():
            cache = PAST_PREFIX + name[len(PRESENT_PREFIX) :]
            outputs[name] = presents.get(cache, value)
            if cache + "_scale" in presents:
                outputs[name + "_scale"] = presents[cache + "_scale"]
        staged.outputs = outputs
        out = rw.finish()
        note = f"{len(sites)} layers: KV cache {self.dtype} {self.granularity}"
        if skipped:
            note += f"; left {len(skipped)}: {skipped[0]}"
        return PassResult(out, True, note)

    def _static_scales(
        self, graph: Graph, sites: list[_Site], ctx: PassContext
    ) -> dict[str, np.ndarray]:
        """max |x| per (head, channel) over the calibration tokens / QMAX, per cache input."""
        batches = ctx.need_calibration(self)
        targets = {site.node.arg(1 + slot): site.names[slot] for site in sites for slot in (0, 1)}
        amax: dict[str, np.ndarray] = {}
        for i, ids in enumerate(batches):
            ctx.progress(i, len(batches), "KV ranges")
            values = evaluate(graph, feeds_for(graph, ids), set(targets), {})
            for v, name in targets.items():
                m = np.max(np.abs(values[v].astype(np.float32)), axis=(0, 1))  # [h, d]
                amax[name] = m if name not in amax else np.maximum(amax[name], m)
        ctx.progress(len(batches), len(batches), "KV ranges")
        qmax = np.float32(QMAX[DTYPES[self.dtype].value])
        return {
            name: np.maximum(m / qmax, FLOOR).astype(np.float32)[None, :, None, :]
            for name, m in amax.items()
        }


def _sites(graph: Graph) -> tuple[list[_Site], list[str]]:
    """Attention whose past key/value are f32 graph inputs read only by it and whose presents
    are the graph's outputs; reasons for the caches left alone."""
    if contract_of(graph.meta).layout != "bnsh":
        raise PassError(
            "quantize-kv rewrites a bnsh cache",
            expected="quantize-kv before kv-layout(layout=bsnh), or kv-layout(layout=bnsh) first",
            got=f"layout {contract_of(graph.meta).layout}",
        )
    index = GraphIndex(graph)
    by_value = {v: n for n, v in graph.inputs.items()}
    sites: list[_Site] = []
    skipped: list[str] = []
    for name in graph.inputs:
        if name.startswith(PAST_PREFIX) and name.endswith(".latent"):
            skipped.append(f"{name}: a latent cache (quantize-kv stores per-head caches)")
        elif name.startswith(PAST_PREFIX) and is_scale(name):
            raise PassError("the KV cache is already quantized", got=name)
    for node in graph.nodes:
        if node.op != "attention" or node.inputs[3] is None:
            continue
        names = cache_names(node, by_value)
        where = index.describe(node)
        if names is None:
            skipped.append(f"{where}: its cache is not a graph input read directly")
            continue
        ok = all(
            graph.outputs.get(present_name(n)) is node.outputs[1 + i]
            and len(index.users_of(graph.inputs[n])) == 1
            and graph.inputs[n].type.dtype == DType.f32
            for i, n in enumerate(names)
        )
        if not ok:
            skipped.append(f"{where}: its cache is shared, transformed or not f32")
            continue
        sites.append(_Site(node, names))
    return sites, skipped
