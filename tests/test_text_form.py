"""The text form: `parse(str(g))` prints identically (property test over random graphs),
and malformed text raises an IRError naming the line.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import irgraph
from irgraph import GraphBuilder, IRError
from irgraph.ops.elementwise import ACTIVATIONS
from irgraph.types import Sym
from tests.helpers.handbuilt import tiny_llama

# -- random graphs ----------------------------------------------------------------------------

LETTERS = "abcxyzAZ_"
IDENT = st.builds(str.__add__, st.sampled_from(LETTERS), st.text(LETTERS + "019", max_size=5))
# Hints may collide, be all digits or hold dots and dashes: the printer must make names unique.
HINT = st.one_of(
    st.none(), st.sampled_from(["x", "x_1", "h", "0", "7", "q.k", "a-b", "1e5", "attn", "_"])
)
PARAM_NAME = st.builds(str.__add__, st.sampled_from("abw"), st.text("ab0._/-", max_size=5))
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
META_VALUE = st.one_of(
    SCALAR,
    st.lists(SCALAR, max_size=4),
    st.lists(st.lists(st.integers(-9, 9), max_size=3), max_size=3),
)
FINITE = st.one_of(st.floats(1e-6, 1e6), st.floats(-1e6, -1e-6))
UNARY = [
    "neg",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "tanh",
    "sin",
    "cos",
    "erf",
    "sigmoid",
    "relu",
    "relu2",
    "silu",
    "fast_gelu",
]
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]
WEIGHT_DTYPES = ["f32", "f16", "i4<g32,sym,f16>", "i4<b3,ch,asym,f32>", "i8<g16,asym,f16>"]


class RandomGraph:
    """Draws a random but well-typed op chain with a GraphBuilder."""

    def __init__(self, data: st.DataObject):
        self.draw = data.draw
        self.b = GraphBuilder(self.draw(st.text(max_size=10), label="name"))
        self.pool: list = []  # float values [batch, seq, d] and friends
        self.params = 0

    def param(self, shape, dtype: str = "f32") -> object:
        self.params += 1
        name = (
            f"{self.draw(PARAM_NAME, label='param')}.{self.params}"  # unique, with dots and slashes
        )
        return self.b.param(name, f"{dtype}[{', '.join(map(str, shape))}]")

    def hint(self) -> str | None:
        return self.draw(HINT, label="hint")

    def pick(self, kind: str):
        """An operand for `kind`, or None when the pool has none that fits."""
        pool = self.pool
        if kind in ("linear", "norm", "split", "attention", "glu", "matmul", "binary", "slice"):
            pool = [v for v in pool if isinstance(v.type.shape[-1], int) and v.type.shape[-1] >= 2]
        if kind in ("attention", "matmul"):
            pool = [
                v
                for v in pool
                if v.type.rank == 3
                and [str(d) for d in v.type.shape[:2]] == ["batch", "seq"]
                and v.type.shape[-1] % 2 == 0
            ]
        return self.draw(st.sampled_from(pool), label="operand") if pool else None

    def step(self) -> None:
        kind = self.draw(
            st.sampled_from(
                [
                    "unary",
                    "gelu",
                    "scale",
                    "binary",
                    "linear",
                    "norm",
                    "split",
                    "concat",
                    "reduce",
                    "softmax",
                    "attention",
                    "glu",
                    "cast",
                    "slice",
                    "transpose",
                    "matmul",
                ]
            ),
            label="op",
        )
        b, h = self.b, self.hint()
        x = self.pick(kind)
        if x is None:
            kind, x = "unary", self.pick("unary")
        event(kind)
        d = x.type.shape[-1]
        if kind == "unary":
            out = b.op(self.draw(st.sampled_from(UNARY)), x, hint=h)
        elif kind == "gelu":
            out = b.gelu(x, approximate=self.draw(st.sampled_from(["none", "tanh"])), hint=h)
        elif kind == "scale":
            out = b.scale(x, factor=self.draw(FINITE), hint=h)
        elif kind == "binary":
            other = x if self.draw(st.booleans()) else self.param((d,))
            out = b.op(self.draw(st.sampled_from(BINARY)), x, other, hint=h)
        elif kind == "linear":
            n = self.draw(st.sampled_from([4, 8, 12]))
            bias = self.param((n,)) if self.draw(st.booleans()) else None
            weight = self.draw(st.sampled_from(WEIGHT_DTYPES), label="weight dtype")
            out = b.linear(x, self.param((n, d), weight), bias, hint=h)
        elif kind == "norm":
            if self.draw(st.booleans()):
                bias = self.param((d,)) if self.draw(st.booleans()) else None
                out = b.layer_norm(
                    x,
                    self.param((d,)),
                    bias,
                    eps=self.draw(st.sampled_from([1e-5, 1e-6, 0.001])),
                    weight_offset=self.draw(st.sampled_from([0.0, 1.0])),
                    hint=h,
                )
            else:
                out = b.rms_norm(
                    x, self.param((d,)), eps=self.draw(st.sampled_from([1e-5, 1e-6])), hint=h
                )
        elif kind == "split":
            first = self.draw(st.integers(1, d - 1))
            sizes = [first, d - first]
            outs = b.split(x, axis=-1, sizes=sizes, hint=h)
            self.pool.extend(outs)
            return
        elif kind == "concat":
            same = [v for v in self.pool if v.type == x.type]
            parts = self.draw(st.lists(st.sampled_from(same), min_size=1, max_size=3))
            out = b.concat(
                x, *parts, axis=self.draw(st.sampled_from([1, -1])), hint=h
            )  # seq axis gives k*seq
        elif kind == "reduce":
            op = self.draw(st.sampled_from(["reduce_sum", "reduce_mean", "reduce_max"]))
            out = b.op(op, x, axes=[-1], keepdims=True, hint=h)
        elif kind == "softmax":
            out = b.softmax(x, axis=self.draw(st.sampled_from([-1, 1])), hint=h)
        elif kind == "attention":
            out = self.attention(x, h)
        elif kind == "glu":
            out = b.glu(x, x, act=self.draw(st.sampled_from(sorted(ACTIVATIONS))), hint=h)
        elif kind == "cast":
            out = b.cast(
                b.cast(x, dtype=self.draw(st.sampled_from(["f16", "bf16", "i64"]))),
                dtype="f32",
                hint=h,
            )
        elif kind == "slice":
            out = b.slice(x, axis=-1, start=self.draw(st.integers(-d, d - 2)), end=d, hint=h)
        elif kind == "transpose":
            out = b.transpose(x, perm=self.draw(st.permutations(range(x.type.rank))), hint=h)
        else:
            out = b.matmul(x, self.param((d, self.draw(st.sampled_from([4, 8])))), hint=h)
        if out.type.dtype.is_float and 0 not in [s for s in out.type.shape if isinstance(s, int)]:
            self.pool.append(out)

    def attention(self, x, h):
        b = self.b
        d = x.type.shape[-1]
        heads = self.draw(st.sampled_from([n for n in (1, 2, 4) if d % (n * 2) == 0]))
        q = b.reshape(x, shape=[0, 0, heads, -1])
        pos = b.graph.inputs.get("position_ids") or b.input("position_ids", "i64[batch, seq]")
        q = b.rotary(
            q,
            pos,
            **self.draw(
                st.sampled_from(
                    [
                        {},
                        {"interleaved": True},
                        {"scaling": "linear", "factor": 2.0},
                        {
                            "scaling": "yarn",
                            "factor": 40.0,
                            "original_max_position": 4096,
                            "mscale": 0.707,
                            "mscale_all_dim": 0.707,
                            "attention_factor": None,
                        },
                        {"scaling": "llama3", "factor": 8.0, "original_max_position": 8192},
                    ]
                )
            ),
        )
        past = None
        if self.draw(st.booleans()):
            shape = f"[batch, {heads}, past, {d // heads}]"
            n = len(b.graph.inputs)
            past = (
                b.input(f"past_key_values.{n}.key", "f32" + shape),
                b.input(f"past_key_values.{n}.value", "f32" + shape),
            )
        mask = None
        if self.draw(st.booleans()):  # a key mask after absent past inputs prints `_, _`
            total = "past+seq" if past else "seq"
            name = f"mask_{total.replace('+', '_')}"
            mask = b.graph.inputs.get(name) or b.input(name, f"i64[batch, {total}]")
        attrs = self.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "causal": st.booleans(),
                    "window": st.integers(0, 9),
                    "scale": st.one_of(st.none(), FINITE),
                    "softcap": st.sampled_from([0.0, 30.0]),
                },
            )
        )
        out, pk, pv = b.attention(q, q, q, *(past or (None, None)), mask, hint=h, **attrs)
        if self.draw(st.booleans()):
            b.output(f"present.{len(b.graph.outputs)}.key", pk)
        return b.reshape(out, shape=[0, 0, -1])


def build_random(data: st.DataObject) -> irgraph.Graph:
    g = RandomGraph(data)
    for key in data.draw(st.lists(IDENT, unique=True, max_size=4), label="meta keys"):
        g.b.graph.meta[key] = data.draw(META_VALUE, label="meta")
    for i in range(data.draw(st.integers(1, 2), label="inputs")):
        d = data.draw(st.sampled_from([4, 8, 12]))
        g.pool.append(
            g.b.input(
                data.draw(st.sampled_from(["x", "h", "emb.in"])) + str(i), f"f32[batch, seq, {d}]"
            )
        )
    for _ in range(data.draw(st.integers(1, 12), label="nodes")):
        g.step()
    for i, v in enumerate(
        data.draw(st.lists(st.sampled_from(g.pool), min_size=1, max_size=3), label="outputs")
    ):
        g.b.output(f"out.{i}", v)
    return g.b.build()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_parse_print_round_trip(data):
    graph = build_random(data)
    text = str(graph)
    parsed = irgraph.parse(text)
    parsed.verify()
    assert str(parsed) == text
    assert list(parsed.inputs) == list(graph.inputs) and list(parsed.outputs) == list(graph.outputs)
    assert len(parsed.nodes) == len(graph.nodes)
    assert [n.op for n in parsed.nodes] == [n.op for n in graph.nodes]
    for key, value in graph.meta.items():  # meta values survive, nan included
        assert _same_meta(parsed.meta[key], value), key


def _same_meta(a, b) -> bool:
    if isinstance(b, (list, tuple)):
        return isinstance(a, list) and len(a) == len(b) and all(map(_same_meta, a, b))
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return type(a) is type(b) and a == b


def test_tiny_llama_round_trips():
    graph = tiny_llama()
    text = str(graph)
    assert str(irgraph.parse(text)) == text
    assert '  %12: f32[batch, seq, 48] = glu(%10, %11) {act="silu"}\n' in text


EXAMPLE = """\
# comments and blank lines are allowed
graph "demo" {
  meta vocab = 16
  meta ratios = [0.5, -inf, nan, 1e-05]
  meta tag = "a \\"quoted\\" name"
  input %x: f32[batch, seq, 8]
  input %mask: i64[batch, past+seq]
  param @w.0: f32[4, 8]
  %h: f32[batch, seq, 4] = linear(%x, @w.0, _)
  %a: f32[batch, seq, 2], %b: f32[batch, seq, 2] = split(%h) {axis=-1, sizes=[2, 2]}
  %c: f32[batch, 2*seq, 2] = concat(%a, %b) {axis=1}
  output y = %c
  output present.0.key = %a
}
"""


def test_hand_written_text_parses_and_prints_canonically():
    graph = irgraph.parse(EXAMPLE)
    assert graph.meta == {
        "vocab": 16,
        "ratios": [0.5, float("-inf"), pytest.approx(float("nan"), nan_ok=True), 1e-05],
        "tag": 'a "quoted" name',
    }
    assert graph.nodes[2].outputs[0].type.shape[1] == Sym((("seq", 2),))
    assert graph.nodes[0].inputs[2] is None
    text = str(graph)
    assert (
        "  %h: f32[batch, seq, 4] = linear(%x, @w.0, _)\n" in text
    )  # an absent optional input prints `_`
    assert str(irgraph.parse(text)) == text


# -- malformed text ---------------------------------------------------------------------------

HEAD = 'graph "bad" {\n  input %x: f32[batch, 8]\n  param @w: f32[4, 8]\n'


@pytest.mark.parametrize(
    "body,line,message",
    [
        ("  %y: f32[batch, 8] = neg(%x) $\n}\n", 4, "unexpected character '\\$'"),
        ("  %y: f32[batch, 8] = frobnicate(%x)\n}\n", 4, "unknown op 'frobnicate'"),
        ("  input %z: f31[2]\n}\n", 4, "unknown dtype 'f31'"),
        (
            "  %y: f32[batch, 5] = neg(%x)\n}\n",
            4,
            r"declared result types of neg differ.*expected f32\[batch, 8\].*"
            r"got f32\[batch, 5\]",
        ),
        ("  %y: f32[batch, 8] = neg(%z)\n}\n", 4, "value %z used before it is defined"),
        (
            "  %y: f32[batch, 8] = neg(%x)\n  %y: f32[batch, 8] = exp(%x)\n}\n",
            5,
            r"value %y defined twice \(SSA\)",
        ),
        ("  %y: f32[batch, 8] = neg(%x) {alpha=1}\n}\n", 4, "unknown attribute.*alpha.*for op neg"),
        ("  %y: f32[batch, 4] = linear(%x, @v)\n}\n", 4, "param @v is not declared"),
        ("  %y: f32[batch, 4] = linear(%x, @w\n}\n", 4, "syntax error.*expected"),
        (
            '  %y: f32[batch, 8] = scale(%x) {factor="big"}\n}\n',
            4,
            "attribute 'factor' of scale.*expected float",
        ),
        ("  %y: f32[batch, 8] = scale(%x)\n}\n", 4, "needs attribute 'factor'"),
        (
            "  %y: f32[batch, 8] = matmul(%x, @w)\n}\n",
            4,
            r"matmul inner dims differ \(expected 8, got 4\)",
        ),
        ("  output y = %nothing\n}\n", 4, "value %nothing used before it is defined"),
        ("  %y: f32[batch, 8] = neg(%x)\n", 4, "ends without its closing brace"),
        ("}\n  %y: f32[batch, 8] = neg(%x)\n", 5, "text after the closing brace"),
    ],
)
def test_malformed_text_names_the_line(body, line, message):
    with pytest.raises(IRError, match=message) as err:
        irgraph.parse(HEAD + body)
    assert f"line {line}" in str(err.value)


def test_empty_and_headless_text():
    with pytest.raises(IRError, match="empty graph text"):
        irgraph.parse("\n# nothing\n")
    with pytest.raises(IRError, match="line 1"):
        irgraph.parse('grap "x" {\n}\n')
