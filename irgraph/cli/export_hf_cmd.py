"""`irgraph export-hf GRAPH -o DIR`: a saved irgraph graph -> a Hugging Face checkpoint folder."""

from __future__ import annotations

import click

from irgraph.cli import progress
from irgraph.cli.output_rule import (
    check_output_option,
    force_option,
    output_folder_option,
    report_replaced,
)

HELP = """Export the saved graph GRAPH as a Hugging Face checkpoint folder.

\b
Writes config.json, generation_config.json, model.safetensors (Hugging Face
tensor names, each weight in its stored dtype: f32, f16 or bf16), the tokenizer
and irgraph_export.json (what was done). The inverse of import-hf: importing
the folder gives the same graph text and the same weights.

\b
Families: the LLaMA form: llama, mistral (sliding window), mixtral (routed
experts); GQA; tied or separate head. Before anything is written, the config
is run through import-hf's own translator and builder, and the graph it builds
must print as GRAPH does; any other graph (another family, fused projections,
a W8A8 linear) is refused with the first line that differs.

\b
Quantized weights: refused by name, unless --dequantize writes their f32
dequantization (the IR's own) and lists them.

\b
Tokenizer: the graph folder's tokenizer.json (+ tokenizer_config.json,
special_tokens_map.json) is copied; a graph without one reads UTF-8 bytes as
ids, and gets a byte-level BPE tokenizer.json that encodes text as its bytes.
"""


@click.command("export-hf", help=HELP)
@click.argument("graph_dir", metavar="GRAPH", type=click.Path(exists=True, file_okay=False))
@output_folder_option("Checkpoint folder to write (config.json, model.safetensors, tokenizer.json)")
@click.option(
    "--dequantize",
    is_flag=True,
    help="Write quantized weights as their f32 dequantization instead of refusing the graph.",
)
@force_option
def export_hf(graph_dir: str, out: str, dequantize: bool, force: bool) -> None:
    from irgraph.model_zoo.hf_export import export_to_dir

    replaced = check_output_option(out, [graph_dir], force)
    with progress.reporter() as report:
        target, exported = export_to_dir(
            graph_dir, out, dequantize=dequantize, overwrite=force, progress=report
        )
    report_replaced(out, replaced)
    for name in exported.dequantized:
        click.echo(f"dequantized {name} to f32")
    click.echo(exported.tokenizer.note)
    config = exported.config
    click.echo(
        f"exported {config['model_type']} ({len(exported.tensors)} tensors, "
        f"{config['torch_dtype']}) -> {target}"
    )
