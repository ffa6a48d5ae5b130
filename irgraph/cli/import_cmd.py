"""`irgraph import-hf HF_DIR -o DIR`: a Hugging Face checkpoint folder -> a saved irgraph graph."""

from __future__ import annotations

import click

from irgraph.cli import progress
from irgraph.cli.output_rule import (
    check_output_option,
    force_option,
    output_folder_option,
    report_replaced,
)


@click.command("import-hf")
@click.argument("hf_dir", type=click.Path(exists=True, file_okay=False))
@output_folder_option("Graph folder to write (graph.irg, weights.safetensors, tokenizer.json)")
@force_option
def import_hf(hf_dir: str, out: str, force: bool) -> None:
    """Import the checkpoint in HF_DIR (config.json + *.safetensors) as an irgraph graph folder.

    \b
    Quantized checkpoints (config.json's quantization_config) keep their quantized
    linears, as the same function in the IR's form:
      gptq                GPTQModel / AutoGPTQ, 4 and 8 bit, sym and asym
      awq                 AutoAWQ GEMM packing, 4 bit
      compressed-tensors  llm-compressor pack-quantized int4/int8 weight-only
    Act order (g_idx) is folded into gate/up rows for the down projection and
    refused elsewhere; W8A8 activations and unknown schemes are refused by name.
    """
    from irgraph.model_zoo.hf_import import import_to_dir
    from irgraph.serialize import load

    replaced = check_output_option(out, [hf_dir], force)
    with progress.reporter() as report:
        target = import_to_dir(hf_dir, out, overwrite=force, progress=report)
    report_replaced(out, replaced)
    graph = load(target)
    params = sum(int(v.type.numel({})) for v in graph.params.values())
    dtypes = sorted({str(v.type.dtype) for v in graph.params.values()})
    click.echo(
        f"imported {graph.meta.get('model')} ({params:,} parameters, {'/'.join(dtypes)}) -> "
        f"{target}"
    )
