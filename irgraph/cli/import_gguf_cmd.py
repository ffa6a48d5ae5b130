"""`irgraph import-gguf FILE.gguf -o DIR`: a llama.cpp GGUF file -> a saved irgraph graph."""

from __future__ import annotations

import click

from irgraph.cli import progress
from irgraph.cli.output_rule import (
    check_output_option,
    force_option,
    output_folder_option,
    report_replaced,
)

HELP = """Import GGUF_FILE (llama.cpp's format) as an irgraph graph folder.

\b
Architectures: llama (GQA, tied or separate head, Mixtral's experts,
LLaMA-3 rope_freqs), deepseek2, gptneox, falcon, bloom, gpt2, starcoder;
others are refused by name. q/k rows go back from llama.cpp's rotary pair
order to the IR's, fused attn_qkv tensors are split, biases that are zero
everywhere and a head that repeats the embedding are dropped, so a file
irgraph wrote imports as the graph it was written from (GELU comes back as
llama.cpp computes it: the tanh approximation).

\b
Tensor types:
  F32, F16, BF16   kept as such
  Q8_0             exact: i8<g32,sym,f16>
  Q4_0             exact: i4<g32,sym,f16>
  Q5_0             exact: i8<g32,sym,f16> (5-bit values in 8-bit storage)
  Q6_K             exact: i8<g16,sym,f32> (scale = d * sub-scale)
  Q4_1             exact: i4<g32,asym,f16> only where each block's minimum is
                   an integer zero point (as irgraph writes it); else as below
  Q4_K, Q5_K, Q2_K, Q3_K, IQ*, ...
                   no exact IR form: refused, naming the tensors, unless
                   --dequantize stores gguf's dequantization (f32, or --dtype f16)
"Exact": gguf's own dequantization of the tensor equals the IR's dequantized
weight bit for bit. Dequantized tensors are listed with the reason.

\b
Tokenizer: a byte-level BPE ("gpt2" vocabulary) is rebuilt as tokenizer.json;
irgraph's own byte vocabulary needs none; a vocabulary that cannot be rebuilt
exactly (SentencePiece "llama") is not guessed at, and the output says so.
"""


@click.command("import-gguf", help=HELP)
@click.argument("gguf_file", type=click.Path(exists=True, dir_okay=False))
@output_folder_option("Graph folder to write (graph.irg, weights.safetensors, tokenizer.json)")
@click.option(
    "--dequantize",
    is_flag=True,
    help="Store tensors whose type the IR has no exact form for (Q4_K, Q5_K, ...) "
    "dequantized, instead of refusing the file.",
)
@click.option(
    "--dtype",
    type=click.Choice(["f32", "f16"]),
    default="f32",
    show_default=True,
    help="Storage of dequantized tensors (with --dequantize).",
)
@force_option
def import_gguf(gguf_file: str, out: str, dequantize: bool, dtype: str, force: bool) -> None:
    from irgraph.model_zoo.gguf_import import import_to_dir

    replaced = check_output_option(out, [gguf_file], force)
    with progress.reporter() as report:
        target, imported = import_to_dir(
            gguf_file, out, dequantize=dequantize, dtype=dtype, overwrite=force, progress=report
        )
    report_replaced(out, replaced)
    graph = imported.graph
    params = sum(int(v.type.numel({})) for v in graph.params.values())
    kinds = sorted({str(v.type).split("[")[0] for v in graph.params.values()})
    for tensor, why in imported.dequantized.items():
        click.echo(f"dequantized {tensor} to {dtype}: {why}")
    click.echo(imported.vocabulary.note)
    click.echo(
        f"imported {graph.name} ({params:,} parameters, {', '.join(kinds)}"
        f"{f'; {len(imported.dequantized)} tensors dequantized' if imported.dequantized else ''})"
        f" -> {target}"
    )
