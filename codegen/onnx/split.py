"""Encoder-decoder graphs split into an encoder graph and a decoder graph.

One artifact, two ONNX models.

The encoder side is every node whose non-parameter inputs all come from the
encoder inputs (`input_ids`, `encoder_attention_mask`) or other encoder-side
nodes: the encoder stack and the cross-attention K/V projections of its
output. Encoder-side values that decoder nodes read become encoder outputs and
decoder inputs (`encoder_hidden.{k}`), so a runtime encodes a prompt once and
steps only the decoder.
"""

from __future__ import annotations

from irgraph.ir import Graph, Node, Value

ENCODER_INPUTS = ("input_ids", "encoder_attention_mask")
CROSSING = "encoder_hidden.{}"


def split_encoder(graph: Graph) -> tuple[Graph, Graph] | None:
    """(encoder, decoder) graphs sharing the original's values and weights.

    None for decoder-only graphs.
    """
    if "decoder_input_ids" not in graph.inputs:
        return None
    encoder_side = {id(graph.inputs[n]) for n in ENCODER_INPUTS if n in graph.inputs}
    inputs_by_id = {id(v): n for n, v in graph.inputs.items()}
    enc_nodes, dec_nodes = [], []
    for node in graph.nodes:
        sources = [v for v in node.inputs if v is not None and v.param is None]
        if sources and all(id(v) in encoder_side for v in sources):
            enc_nodes.append(node)
            encoder_side.update(id(o) for o in node.outputs)
        else:
            dec_nodes.append(node)
    if not enc_nodes:
        return None
    crossing: dict[int, Value] = {}
    for node in dec_nodes:
        for v in node.inputs:
            if v is not None and id(v) in encoder_side and id(v) not in inputs_by_id:
                crossing.setdefault(id(v), v)
    names = {vid: CROSSING.format(k) for k, vid in enumerate(crossing)}

    def used_inputs(nodes: list[Node]) -> dict[str, Value]:
        ids = {id(v) for n in nodes for v in n.inputs if v is not None}
        return {n: v for n, v in graph.inputs.items() if id(v) in ids}

    def params(nodes: list[Node]) -> dict[str, Value]:
        return {
            v.param: v for n in nodes for v in n.inputs if v is not None and v.param is not None
        }

    encoder = Graph(
        f"{graph.name}.encoder",
        used_inputs(enc_nodes),
        params(enc_nodes),
        enc_nodes,
        {names[vid]: v for vid, v in crossing.items()},
        dict(graph.meta),
        graph.weights,
    )
    dec_inputs = used_inputs(dec_nodes)
    dec_inputs.update({names[vid]: v for vid, v in crossing.items()})
    decoder = Graph(
        graph.name,
        dec_inputs,
        params(dec_nodes),
        dec_nodes,
        dict(graph.outputs),
        dict(graph.meta),
        graph.weights,
    )
    return encoder, decoder
