"""The pass manager: passes registered by name, pipelines, verification, checking and timing.

A pass is a frozen dataclass whose fields are its options (xDSL's design), with
a registered `name`, a `kind` and `apply(graph, ctx) -> PassResult`; `ctx` is a
PassContext (context.py: calibration data, seed, progress, providers):

    @register_pass
    @dataclass(frozen=True)
    class ConstantFold(Pass):
        name = "constant-fold"
        kind = EXACT
        max_elements: int = option(1 << 24, min=0, doc="largest result folded")

Options are typed and may carry a range or choices (`option`); they are checked
when a pipeline is parsed and when a Pass is constructed in Python.

A pipeline is text, `"cse,fuse-parallel-attention,constant-fold(max_elements=1024)"`,
or a Python list of names, Pass objects and (name, {options}) pairs.
`run_pipeline` verifies the graph after every pass, optionally checks each pass
against the interpreter (equivalence.py, in the pass's `check_mode`; an approximate
pass also gets per-layer and logits errors on the calibration data, layer_errors.py), times
every pass, and on any failure raises a PassError naming the pass and the
passes that ran before it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from irgraph.errors import IrgraphError, PassError
from irgraph.ir import Graph
from irgraph.lm import LOGITS
from irgraph.passes.context import PassContext
from irgraph.passes.equivalence import CHECK_MODES, DECODE_STEPS, RANDOM_IO, compare
from irgraph.passes.layer_errors import LayerErrors, layer_errors, random_batches

EXACT = "exact"  # outputs identical up to float rounding (checked at 1e-5)
APPROXIMATE = "approximate"  # outputs change by a measured error (quantization, pruning)
ARCH_CHANGE = "arch-change"  # a different model; needs fine-tuning, runs only when allowed
KINDS = (EXACT, APPROXIMATE, ARCH_CHANGE)


@dataclass(frozen=True)
class PassResult:
    graph: Graph
    modified: bool
    note: str = ""  # what the pass did, for people ("fused 2 blocks")


@dataclass(frozen=True)
class Pass(ABC):
    """Base of all passes. Subclasses are frozen dataclasses: their fields are the options."""

    name: ClassVar[str]
    kind: ClassVar[str] = EXACT
    summary: ClassVar[str] = ""
    # How --check compares before and after (equivalence.py): "random-io" feeds both graphs
    # the same random inputs and caches; "end-to-end" decodes the same ids with each graph
    # keeping its own cache, for passes that change the cache or other input/output shapes.
    check_mode: ClassVar[str] = RANDOM_IO

    def __post_init__(self) -> None:
        """Check every option's type, range and choices (also for passes built in Python)."""
        for spec in option_specs(type(self)):
            value = getattr(self, spec.name)
            checked = spec.check(self.name, value, from_text=False)
            if checked is not value:
                object.__setattr__(self, spec.name, checked)

    @abstractmethod
    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        """A new graph (the input graph is left untouched) and whether anything changed."""

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __str__(self) -> str:
        """This pass as pipeline text: `name`, or `name(key=value, ...)` for non-default options."""
        changed = [
            f"{f.name}={_format_value(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        ]
        return f"{self.name}({', '.join(changed)})" if changed else self.name


PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make `cls` available to pipelines under `cls.name`."""
    if cls.kind not in KINDS:
        raise PassError(
            f"pass {cls.name!r} declares an unknown kind", expected=" | ".join(KINDS), got=cls.kind
        )
    if cls.check_mode not in CHECK_MODES:
        raise PassError(
            f"pass {cls.name!r} declares an unknown check mode",
            expected=" | ".join(CHECK_MODES),
            got=cls.check_mode,
        )
    if cls.name in PASSES and PASSES[cls.name] is not cls:
        raise PassError(f"pass {cls.name!r} registered twice")
    PASSES[cls.name] = cls
    return cls


def get_pass(name: str) -> type[Pass]:
    import irgraph.passes  # noqa: F401  (registers the built-in passes)

    try:
        return PASSES[name]
    except KeyError:
        close = difflib.get_close_matches(name, PASSES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PassError(
            f"unknown pass {name!r}{hint}", expected="one of " + ", ".join(sorted(PASSES))
        ) from None


def option(
    default: Any,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[Any] | None = None,
    doc: str = "",
) -> Any:
    """A pass option with a default, an inclusive range or a set of choices, and a one-line doc."""
    meta = {"min": min, "max": max, "choices": tuple(choices) if choices else None, "doc": doc}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionSpec:
    """One option of a pass: its type, default and the values it accepts."""

    name: str
    type: Any
    default: Any
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def bounds(self) -> str:
        """The range or choices in words ("0 <= x", "one of a, b"); "" when any value goes."""
        if self.choices is not None:
            return "one of " + ", ".join(map(_format_value, self.choices))
        low = f"{self.min:g} <= " if self.min is not None else ""
        high = f" <= {self.max:g}" if self.max is not None else ""
        return f"{low}{self.name}{high}" if low or high else ""

    def allowed(self) -> str:
        """The accepted values: the type, then its bounds ("int, 0 <= max_elements")."""
        return ", ".join(filter(None, [type_name(self.type), self.bounds()]))

    def check(self, pass_name: str, raw: Any, *, from_text: bool) -> Any:
        """`raw` as a value of this option, or a PassError naming pass, option, expected and got."""
        value = _coerce(pass_name, self.name, self.type, raw, from_text)
        outside = (
            (isinstance(value, float) and not math.isfinite(value))  # nan passes every bound
            or (self.choices is not None and value not in self.choices)
            or (self.min is not None and value < self.min)
            or (self.max is not None and value > self.max)
        )
        if outside:
            raise PassError(
                f"option {self.name!r} of pass {pass_name}", expected=self.allowed(), got=repr(raw)
            )
        return value

    def describe(self) -> str:
        """One line for `irgraph passes list`: name, type, default, bounds and doc."""
        line = f"{self.name}: {type_name(self.type)} = {_format_value(self.default)}"
        bounds = self.bounds()
        return line + (f" [{bounds}]" if bounds else "") + (f"  {self.doc}" if self.doc else "")


@functools.cache
def option_specs(cls: type[Pass]) -> tuple[OptionSpec, ...]:
    """The options of pass `cls`, in declaration order."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        choices = f.metadata.get("choices")
        if typing.get_origin(t) is Literal:
            choices = choices or typing.get_args(t)
        specs.append(
            OptionSpec(
                f.name,
                t,
                f.default,
                f.metadata.get("min"),
                f.metadata.get("max"),
                choices,
                f.metadata.get("doc", ""),
            )
        )
    return tuple(specs)


def type_name(t: Any) -> str:
    if typing.get_origin(t) is Literal:
        return " | ".join(map(str, typing.get_args(t)))
    return getattr(t, "__name__", str(t))


def make_pass(name: str, options: dict[str, Any] | None = None, *, from_text: bool = False) -> Pass:
    """Instantiate pass `name` with typed, checked options (strings are parsed when `from_text`)."""
    cls = get_pass(name)
    specs = {spec.name: spec for spec in option_specs(cls)}
    values = {}
    for key, raw in (options or {}).items():
        if key not in specs:
            raise PassError(
                f"unknown option {key!r} for pass {name}",
                expected=", ".join(f"{n}: {type_name(s.type)}" for n, s in specs.items())
                or "no options",
            )
        values[key] = specs[key].check(name, raw, from_text=from_text)
    return cls(**values)


def _coerce(pass_name: str, key: str, t: Any, raw: Any, from_text: bool) -> Any:
    def bad() -> PassError:
        return PassError(
            f"option {key!r} of pass {pass_name}", expected=type_name(t), got=repr(raw)
        )

    if typing.get_origin(t) is Literal:
        choices = typing.get_args(t)
        if raw not in choices:
            raise bad()
        return raw
    if t is bool:
        if isinstance(raw, bool):
            return raw
        if from_text and isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0"):
            return raw.lower() in ("true", "1")
        raise bad()
    if t is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if from_text and isinstance(raw, str):
            try:
                return int(raw, 0)
            except ValueError:
                raise bad() from None
        raise bad()
    if t is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if from_text and isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                raise bad() from None
        raise bad()
    if t is str:
        if isinstance(raw, str):
            return raw
        raise bad()
    raise PassError(f"option {key!r} of pass {pass_name} has an unsupported type", got=type_name(t))


def _format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str) and (not v or any(c in v for c in ',()= "')):
        return '"' + v.replace('"', '\\"') + '"'
    return str(v)


# -- pipelines ---------------------------------------------------------------------------------

PipelineSpec = (
    str | Pass | tuple[str, dict[str, Any]] | Sequence["str | Pass | tuple[str, dict[str, Any]]"]
)


def parse_pipeline(spec: PipelineSpec) -> list[Pass]:
    """Passes from a pipeline string, a Pass, a (name, options) pair, or a list of these."""
    if isinstance(spec, Pass):
        return [spec]
    if isinstance(spec, str):
        return _parse_text(spec)
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], dict)
    ):
        return [make_pass(spec[0], spec[1])]
    if isinstance(spec, (list, tuple)):
        result: list[Pass] = []
        for item in spec:
            if isinstance(item, (list,)):
                raise PassError("pipeline lists do not nest", got=repr(item))
            result.extend(parse_pipeline(item))
        return result
    raise PassError(
        "a pipeline is a string, a Pass, a (name, options) pair or a list of them",
        got=type(spec).__name__,
    )


def _parse_text(text: str) -> list[Pass]:
    """`name`, `name(key=value, ...)`, comma-separated; values may be "quoted"."""
    passes: list[Pass] = []
    i, n = 0, len(text)

    def fail(message: str, expected: str) -> PassError:
        shown = text[i : i + 20] if i < n else "end of text"
        return PassError(
            f"{message} at column {i + 1} of pipeline {text!r}", expected=expected, got=repr(shown)
        )

    def skip_space() -> None:
        nonlocal i
        while i < n and text[i].isspace():
            i += 1

    def word() -> str:
        nonlocal i
        start = i
        while i < n and (text[i].isalnum() or text[i] in "-_."):
            i += 1
        return text[start:i]

    def value() -> str:
        nonlocal i
        if i < n and text[i] == '"':
            i += 1
            out = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(text[i])
                i += 1
            if i >= n:
                raise fail("unterminated string", 'a closing "')
            i += 1
            return "".join(out)
        start = i
        while i < n and text[i] not in ",()=" and not text[i].isspace():
            i += 1
        if i == start:
            raise fail("missing option value", "a value")
        return text[start:i]

    skip_space()
    if i == n:
        return []
    while True:
        skip_space()
        name = word()
        if not name:
            raise fail("expected a pass name", "a pass name")
        options: dict[str, str] = {}
        skip_space()
        if i < n and text[i] == "(":
            i += 1
            skip_space()
            while i < n and text[i] != ")":
                key = word()
                if not key:
                    raise fail(f"expected an option name for pass {name}", "key=value")
                skip_space()
                if i >= n or text[i] != "=":
                    raise fail(f"option {key!r} of pass {name} needs a value", "=")
                i += 1
                skip_space()
                if key in options:
                    raise fail(f"option {key!r} of pass {name} given twice", "each option once")
                options[key] = value()
                skip_space()
                if i < n and text[i] == ",":
                    i += 1
                    skip_space()
                elif i < n and text[i] != ")":
                    raise fail(f"bad option list for pass {name}", "',' or ')'")
            if i >= n:
                raise fail(f"unclosed option list of pass {name}", "')'")
            i += 1
        passes.append(make_pass(name, options, from_text=True))
        skip_space()
        if i == n:
            return passes
        if text[i] != ",":
            raise fail("expected ',' between passes", "','")
        i += 1


# -- running -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassRecord:
    """What one pass did: for the timing table and the closing report."""

    text: str  # the pass as pipeline text
    kind: str
    modified: bool
    seconds: float  # the pass itself
    verify_seconds: float
    nodes_before: int
    nodes_after: int
    note: str = ""
    max_error: float | None = None  # from the equivalence check, when it ran
    check_seconds: float = 0.0
    layers: LayerErrors | None = None  # an approximate pass's --check on the calibration data


@dataclass
class PipelineResult:
    graph: Graph
    records: list[PassRecord] = field(default_factory=list)

    @property
    def modified(self) -> bool:
        return any(r.modified for r in self.records)

    def table(self) -> str:
        """A per-pass timing table, one line per pass."""
        lines = [
            f"{'pass':<40} {'kind':<12} {'ms':>9} {'verify ms':>9} {'nodes':>13} {'max err':>9}  "
            "note"
        ]
        for r in self.records:
            err = "" if r.max_error is None else f"{r.max_error:.2e}"
            nodes = f"{r.nodes_before}->{r.nodes_after}"
            lines.append(
                f"{r.text:<40} {r.kind:<12} {r.seconds * 1e3:>9.2f} {r.verify_seconds * 1e3:>9.2f} "
                f"{nodes:>13} {err:>9}  {r.note if r.modified else _unchanged(r.note)}"
            )
            if r.layers is not None:
                lines += [f"    {line}" for line in r.layers.lines()]
        return "\n".join(lines)


def _unchanged(note: str) -> str:
    return f"unchanged: {note}" if note else "unchanged"


def run_pipeline(
    graph: Graph,
    pipeline: PipelineSpec,
    *,
    ctx: PassContext | None = None,
    verify: bool = True,
    check: bool = False,
    check_mode: str | None = None,
    check_steps: int = DECODE_STEPS,
    tolerance: float = 1e-5,
    seed: int | None = None,
    allow_arch_change: bool = False,
    print_after: Iterable[str] = (),
    on_print: Callable[[Pass, Graph], None] | None = None,
) -> PipelineResult:
    """Run `pipeline` on `graph`; see the module docstring.

    ctx: what the passes may use (default: an empty PassContext); `seed`, when
    given, replaces its seed.
    check: compare before/after of every modified pass in the interpreter and fail
    an exact pass above `tolerance`; approximate and architecture-changing passes
    get their error measured, not bounded; an approximate pass also gets its error per layer
    and at the logits on the calibration data (ctx.calibration; random ids without any, see
    layer_errors.py). The comparison is each pass's
    `check_mode` unless `check_mode` names one for all ("random-io": the same random
    inputs and caches into both graphs, prefill and a decode step; "end-to-end": the
    same token ids, prefill then `check_steps` decode steps, each graph with its own cache).
    print_after: pass names (or "all") whose result goes to `on_print`.
    """
    ctx = ctx or PassContext()
    if seed is not None:
        ctx = dataclasses.replace(ctx, seed=seed)
    if check_mode is not None and check_mode not in CHECK_MODES:
        raise PassError("unknown check mode", expected=" | ".join(CHECK_MODES), got=check_mode)
    passes = parse_pipeline(pipeline)
    wanted = set(print_after)
    unknown = wanted - {p.name for p in passes} - {"all"}
    if unknown:
        raise PassError(
            f"--print-after names passes not in the pipeline: {', '.join(sorted(unknown))}",
            expected=", ".join(p.name for p in passes) or "a non-empty pipeline",
        )
    for p in passes:
        if p.kind == ARCH_CHANGE and not allow_arch_change:
            raise PassError(
                f"pass {p.name} changes the architecture (the model needs fine-tuning after it)",
                expected="allow_arch_change=True (--allow-arch-change)",
                where=f"pass {p}",
            )
    result = PipelineResult(graph)
    for p in passes:
        ran = ", ".join(r.text for r in result.records) or "none"
        where = f"pass {p} (after: {ran})"
        before = result.graph
        pass_ctx = dataclasses.replace(ctx, progress=_prefixed(ctx, p.name))
        t0 = time.perf_counter()
        try:
            out = p.apply(before, pass_ctx)
        except IrgraphError as e:
            raise PassError(f"failed: {e}", where=where) from e
        except Exception as e:  # a bug in the pass: still say which pass and what ran before
            raise PassError(f"crashed with {type(e).__name__}: {e}", where=where) from e
        t1 = time.perf_counter()
        if verify:
            try:
                out.graph.verify()
            except IrgraphError as e:
                raise PassError(f"produced an invalid graph: {e}", where=where) from e
        t2 = time.perf_counter()
        max_error = None
        layers = None
        if check and out.modified:
            mode = check_mode or p.check_mode
            try:
                cmp = compare(
                    before,
                    out.graph,
                    seed=ctx.seed,
                    mode=mode,
                    steps=check_steps,
                    progress=_prefixed(ctx, f"{p.name} check"),
                )
            except IrgraphError as e:
                raise PassError(f"cannot be checked ({mode}): {e}", where=where) from e
            max_error = cmp.max_error
            if p.kind == EXACT and not cmp.max_error <= tolerance:
                raise PassError(
                    f"changed the outputs: {cmp.worst}",
                    expected=f"max error <= {tolerance:g}",
                    got=f"{cmp.max_error:.3g}",
                    where=where,
                )
            if p.kind == APPROXIMATE and LOGITS in before.outputs and LOGITS in out.graph.outputs:
                batches = ctx.calibration or random_batches(before, ctx.seed)
                data = "calibration data" if ctx.calibration else "random ids"
                try:
                    layers = layer_errors(
                        before,
                        out.graph,
                        batches,
                        progress=_prefixed(ctx, f"{p.name} check"),
                    )
                except IrgraphError as e:
                    raise PassError(f"cannot be checked per layer: {e}", where=where) from e
                layers = dataclasses.replace(layers, data=f"{data}, {layers.data}")
        t3 = time.perf_counter()
        result.records.append(
            PassRecord(
                str(p),
                p.kind,
                out.modified,
                t1 - t0,
                t2 - t1,
                len(before.nodes),
                len(out.graph.nodes),
                out.note,
                max_error,
                t3 - t2,
                layers,
            )
        )
        result.graph = out.graph
        if on_print is not None and ("all" in wanted or p.name in wanted):
            on_print(p, out.graph)
    return result


def _prefixed(ctx: PassContext, label: str) -> Callable[[int, int, str], None]:
    """`ctx.progress` with `label` before each report, so one callback tells passes apart."""

    def progress(done: int, total: int, what: str) -> None:
        ctx.progress(done, total, f"{label}: {what}" if what else label)

    return progress
