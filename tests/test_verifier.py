"""`verify(graph)`: shape mismatches and SSA violations raise IRError naming the node and op,
with expected vs. got and the text lines around the node.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from irgraph import GraphBuilder, IRError, Node, Value, parse_type
from irgraph.verifier import verify
from tests.helpers.handbuilt import tiny_llama


def small():
    b = GraphBuilder("small")
    x = b.input("x", "f32[batch, seq, 8]")
    w = b.param("w", "f32[4, 8]")
    h = b.linear(x, w, hint="h")
    y = b.silu(h, hint="y")
    z = b.add(y, h, hint="z")
    b.output("out", z)
    return b.build({"w": np.zeros((4, 8), np.float32)})


def node_error(graph) -> IRError:
    with pytest.raises(IRError) as err:
        verify(graph)
    return err.value


def test_well_formed_graphs_pass():
    verify(small())
    verify(tiny_llama())


def test_wrong_result_type_names_node_op_expected_got_and_context():
    g = small()
    silu = g.nodes[1]
    bad = Value(parse_type("f32[batch, seq, 5]"), hint="y")
    g.nodes[1] = dataclasses.replace(silu, outputs=(bad,))
    g.nodes[2] = dataclasses.replace(g.nodes[2], inputs=(bad, g.nodes[0].outputs[0]))
    err = node_error(g)
    text = str(err)
    assert err.where == "node silu #1"
    assert "result 0 of silu has the wrong type" in text
    assert err.expected == parse_type("f32[batch, seq, 4]") and err.got == parse_type(
        "f32[batch, seq, 5]"
    )
    assert "expected f32[batch, seq, 4], got f32[batch, seq, 5]" in text
    # The context: the offending line marked with '>', its neighbours around it.
    assert "> " + "  %y: f32[batch, seq, 5] = silu(%h)" in text
    assert "  %h: f32[batch, seq, 4] = linear(%x, @w)" in text
    assert "= add(%y, %h)" in text


def test_input_shape_mismatch_names_op_and_dims():
    g = small()
    w = g.params["w"]
    w.type = parse_type("f32[4, 6]")  # the weight no longer fits the input features
    err = node_error(g)
    assert err.where == "node linear #0"
    assert "linear input features differ from weight [out, in]" in str(err)
    assert (err.expected, err.got) == (6, 8)


def test_value_used_before_definition():
    g = small()
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]
    err = node_error(g)
    assert err.where == "node silu #0"
    assert "is used before it is defined" in str(err)


def test_value_defined_twice():
    g = small()
    h = g.nodes[0].outputs[0]
    g.nodes.append(Node("neg", (h,), (h,)))
    err = node_error(g)
    assert err.where == "node neg #3"
    assert "defined twice (SSA)" in str(err)


def test_same_node_twice_is_an_ssa_violation():
    g = small()
    g.nodes.insert(1, g.nodes[0])
    assert "defined twice (SSA)" in str(node_error(g))


def test_undeclared_param():
    g = small()
    stray = Value(parse_type("f32[4, 8]"), param="stray")
    g.nodes[0] = dataclasses.replace(g.nodes[0], inputs=(g.inputs["x"], stray))
    err = node_error(g)
    assert err.where == "node linear #0" and "param @stray is not declared" in str(err)


def test_param_registered_under_another_name():
    g = small()
    g.params["w2"] = g.params.pop("w")
    with pytest.raises(IRError, match="param @w2 is registered under another name"):
        verify(g)


def test_unknown_op_and_bad_attrs():
    g = small()
    g.nodes[1] = dataclasses.replace(g.nodes[1], op="swish")
    err = node_error(g)
    assert err.where == "node swish #1" and "unknown op 'swish'" in str(err)
    g = small()
    g.nodes[1] = dataclasses.replace(g.nodes[1], attrs={"beta": 1.0})
    err = node_error(g)
    assert err.where == "node silu #1" and "unknown attribute(s) beta for op silu" in str(err)


def test_wrong_number_of_results():
    g = small()
    extra = Value(parse_type("f32[batch, seq, 4]"))
    g.nodes[1] = dataclasses.replace(g.nodes[1], outputs=(g.nodes[1].outputs[0], extra))
    err = node_error(g)
    assert "silu has the wrong number of results" in str(err) and (err.expected, err.got) == (1, 2)


def test_missing_required_input():
    g = small()
    g.nodes[0] = dataclasses.replace(g.nodes[0], inputs=(g.inputs["x"], None))
    assert "linear input 'weight' is required" in str(node_error(g))


def test_output_not_produced_and_missing_weights():
    g = small()
    g.outputs["ghost"] = Value(parse_type("f32[1]"))
    with pytest.raises(IRError, match="output 'ghost' is not produced"):
        verify(g)
    g = small()
    g.weights = type(g.weights)({})
    with pytest.raises(IRError, match="weights missing for 1 params: w"):
        verify(g)


def test_builder_reports_the_op_at_the_call():
    b = GraphBuilder("g")
    x = b.input("x", "f32[batch, 8]")
    with pytest.raises(
        IRError, match=r"^add\(res\): shapes do not broadcast .*expected equal dims or 1"
    ):
        b.add(x, b.param("p", "f32[3]"), hint="res")
    with pytest.raises(IRError, match="takes inputs"):
        b.add(x)
