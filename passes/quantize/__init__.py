"""quantize: weights to int8 / int4 / 3-bit, one method per module (issue 13).

    quantize(method=rtn, bits=4, group=128, sym=true, scale_dtype=f16, skip="", head_bits=8,
             mse=false)

Kind: approximate. `bits` is 3, 4 or 8 (3-bit values live in i4 containers); `group` is the
number of input columns that share a scale, 0 for one scale per output channel (a group that
does not divide K pads the last group with zeros, as ORT's MatMulNBits does); `sym=false` adds
zero points; `skip` is a quoted, comma-separated list of globs over parameter names; the LM
head gets max(bits, head_bits) bits (default 8: docs/onnxruntime.md §5); `mse=true` (rtn and
gptq) searches each group's scale, its range shrunk by the factor with the lowest rounding
error, instead of min/max (scale_search.py, GPTQ's own `mse` option). Which
weights are quantized and which stay float (norms, biases, routers, rotary tables) is
common.py's docstring; the numerics are irgraph/quant.py's.

Methods: `rtn` (rtn.py) rounds to nearest and needs no data. `gptq` (gptq.py: damp, act_order,
block) needs calibration data (PassContext.calibration, `--calibration` on the CLI) and quantizes
layer by layer (calibrate.py). `awq` (awq.py: grid) needs calibration data too: it scales input
channels (folded into the preceding norm or linear) and clips each group before rounding.
`w8a8` (w8a8.py) quantizes linear weights to int8 per output channel and marks their linears
to quantize activations to int8 per token at run time (no data needed; `smoothquant` before it
moves activation outliers into the weights); it reads only `skip` and `scale_dtype`.
An option the chosen method does not read is an error, as is quantizing a weight twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import PassError
from irgraph.ir import Graph
from irgraph.passes.context import PassContext
from irgraph.passes.manager import APPROXIMATE, Pass, PassResult, option, register_pass
from irgraph.passes.quantize import awq, gptq, rtn, w8a8
from irgraph.passes.quantize.common import retype, select
from irgraph.quant import QuantSpec

WeightQuantizer = Callable[[np.ndarray, QuantSpec, bool], dict[str, np.ndarray]]

SHARED = frozenset({"method", "skip", "scale_dtype"})
WEIGHT_GRID = SHARED | {"bits", "group", "sym", "head_bits"}
USES: dict[str, frozenset[str]] = {  # the options each method reads
    "rtn": WEIGHT_GRID | {"mse"},
    "gptq": WEIGHT_GRID | {"mse", "damp", "act_order", "block"},
    "awq": WEIGHT_GRID | {"grid"},
    "w8a8": SHARED,
}
METHODS: dict[str, WeightQuantizer] = {"rtn": rtn.quantize_weight}  # weight by weight


@register_pass
@dataclass(frozen=True)
class Quantize(Pass):
    name = "quantize"
    kind = APPROXIMATE
    summary = (
        "quantize weights to 8, 4 or 3 bits (rtn, gptq, awq) or weights and activations (w8a8)"
    )
    method: Literal["rtn", "gptq", "awq", "w8a8"] = option("rtn", doc="quantization method")
    bits: int = option(4, choices=(3, 4, 8), doc="bits per weight (3 is stored in i4)")
    group: int = option(128, min=0, doc="input columns per scale; 0 = per output channel")
    sym: bool = option(True, doc="symmetric (no zero points)")
    scale_dtype: Literal["f16", "f32"] = option("f16", doc="dtype of the scales")
    skip: str = option("", doc='comma-separated globs of weights kept float, e.g. "lm_head.*"')
    head_bits: int = option(
        8,
        choices=(3, 4, 8),
        doc="the LM head gets max(bits, head_bits): 8 keeps its argmax under ORT's int8 "
        "activations; 4 is what onnxruntime-genai's int4 build does (half the head's bytes)",
    )
    mse: bool = option(
        False,
        doc="rtn, gptq: each group's range shrunk by the factor 1 - i/100 (i < 80) with the "
        "lowest sum |w - q(w)|^2.4, instead of min/max (GPTQ's mse search)",
    )
    damp: float = option(0.01, min=0, doc="gptq: damping, a fraction of mean(diag H)")
    act_order: bool = option(True, doc="gptq: columns in order of decreasing activation")
    block: int = option(128, min=1, doc="gptq: columns per lazy block update")
    grid: int = option(20, min=1, doc="awq: points of the scale-exponent and clip searches")

    def __post_init__(self) -> None:
        super().__post_init__()
        unused = [
            f.name
            for f in fields(self)
            if f.name not in USES[self.method] and getattr(self, f.name) != f.default
        ]
        if unused:
            raise PassError(
                f"option(s) {', '.join(unused)} of pass quantize are not used by "
                f"method={self.method}",
                expected=", ".join(sorted(USES[self.method] - {"method"})),
                got=", ".join(f"{n}={getattr(self, n)}" for n in unused),
            )
        if self.group == 1:
            raise PassError(
                "option 'group' of pass quantize", expected="0 (per channel) or >= 2", got="1"
            )

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        if self.method == "w8a8":
            result, names, w8a8_notes = w8a8.quantize_graph(
                graph, DType(self.scale_dtype), self.skip, ctx
            )
            note = f"quantized {len(names)} linears to int8 weights (ch) and activations (token)"
            return PassResult(result, bool(names), "; ".join([note, *w8a8_notes]))
        chosen = select(graph, self.bits, self.skip, self.head_bits)
        if not chosen:
            return PassResult(graph, False, "no float weights to quantize")
        specs = {
            name: QuantSpec(bits, self.group, self.sym, DType(self.scale_dtype))
            for name, bits in chosen.items()
        }
        arrays = None
        notes: list[str] = []
        if graph.weights is not None and self.method == "gptq":
            opts = gptq.Options(self.damp, self.block, self.act_order, self.mse)
            arrays, notes = gptq.quantize_graph(graph, specs, opts, ctx, self)
        elif graph.weights is not None and self.method == "awq":
            graph, arrays, notes = awq.quantize_graph(graph, specs, self.grid, ctx, self)
        elif graph.weights is not None:
            quantize = METHODS[self.method]
            arrays = {}
            for i, (name, spec) in enumerate(specs.items()):
                ctx.progress(i, len(specs), name)
                arrays[name] = quantize(np.asarray(graph.weight(name)), spec, self.mse)
            ctx.progress(len(specs), len(specs), "")
        result = retype(graph, specs, arrays)
        kinds = sorted({f"{s.storage}<{s}>" for s in specs.values()})
        note = f"quantized {len(specs)} weights ({', '.join(kinds)})"
        return PassResult(result, True, "; ".join([note, *notes]))
