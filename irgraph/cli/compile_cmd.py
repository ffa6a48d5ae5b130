"""`irgraph compile SOURCE --target onnx -o ART`: a saved graph, HF checkpoint or zoo model -> an artifact."""

from __future__ import annotations

from pathlib import Path

import click

from irgraph.cli.common import clean_errors
from irgraph.cli.pass_options import apply_pipeline, pipeline_options
from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.model_zoo import SIZES, Size

TOKENIZER = "tokenizer.json"
TARGETS = ("onnx", "tvm-llvm", "tvm-cuda", "tvm-aarch64")


def default_passes(target: str, flavour: str = "ort") -> str:
    """The pipeline `compile` runs for `target` after --passes (each backend's DEFAULT_PASSES)."""
    if target == "onnx":
        from irgraph.codegen.onnx import DEFAULT_PASSES as ONNX_PASSES

        return ONNX_PASSES[flavour]
    from irgraph.codegen.tvm import DEFAULT_PASSES as TVM_PASSES

    return TVM_PASSES


def load_source(source: str, size: Size, seed: int) -> tuple[Graph, dict[str, Path]]:
    """The graph SOURCE names and files to carry into the artifact (tokenizer.json).

    An existing folder is a saved graph (graph.irg) or a Hugging Face checkpoint
    (config.json); anything else is a zoo model name.
    """
    from irgraph.serialize import is_graph_dir, load

    path = Path(source)
    if path.is_dir():
        extra = {TOKENIZER: path / TOKENIZER} if (path / TOKENIZER).is_file() else {}
        if is_graph_dir(path):
            return load(path), extra
        if (path / "config.json").is_file():
            from irgraph.model_zoo.hf_import import import_hf

            return import_hf(path), extra
        raise ConfigError(
            "folder is neither a saved graph (graph.irg) nor an HF checkpoint (config.json)",
            where=str(path),
        )
    if path.exists():
        raise ConfigError(
            "SOURCE must be a folder or a zoo model name", got="a file", where=str(path)
        )
    from irgraph import model_zoo

    return model_zoo.build(source, size=size, seed=seed), {}


@click.command("compile")
@click.argument("source")
@click.option("--target", type=click.Choice(TARGETS), default="onnx", show_default=True)
@click.option(
    "--flavour",
    type=click.Choice(["ort", "portable"]),
    default="ort",
    show_default=True,
    help="onnx: ONNX Runtime contrib ops (ort) or standard ONNX only (portable).",
)
@click.option(
    "--dtype",
    type=click.Choice(["f32", "f16", "bf16"]),
    default="f32",
    show_default=True,
    help="onnx: compute precision of weights and activations.",
)
@click.option(
    "--size",
    type=click.Choice(SIZES),
    default="tiny",
    show_default=True,
    help="Zoo models: size to build.",
)
@click.option("--seed", default=0, show_default=True, help="Zoo models: weight seed.")
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Artifact folder.",
)
@click.option(
    "--cuda-arch",
    type=click.Choice(["sm_80", "sm_86", "sm_89", "sm_90"]),
    default="sm_80",
    show_default=True,
    help="tvm-cuda: GPU architecture the kernels are built and nvcc-checked for.",
)
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option(
    "--no-default-passes",
    is_flag=True,
    help="Skip the target's default passes, run after --passes "
    "(`irgraph passes list --target T` shows them).",
)
@pipeline_options
@clean_errors
def compile_(
    source: str,
    target: str,
    flavour: str,
    dtype: str,
    size: Size,
    seed: int,
    cuda_arch: str,
    out: str,
    force: bool,
    no_default_passes: bool,
    passes: str,
    print_after: tuple[str, ...],
    check: bool,
    allow_arch_change: bool,
    timing: bool,
) -> None:
    """Compile SOURCE (saved graph folder, HF checkpoint folder, or zoo model name) into an artifact."""
    from tqdm import tqdm

    if Path(out).exists() and not force:
        raise click.UsageError(f"output folder {out} exists (pass --force to replace it)")
    graph, extra = load_source(source, size, seed)
    defaults = "" if no_default_passes else default_passes(target, flavour)
    pipeline = ",".join(p for p in (passes, defaults) if p)
    graph = apply_pipeline(graph, pipeline, print_after, check, allow_arch_change, timing)
    ran = {"user": passes, "default": defaults}
    if target == "onnx":
        from irgraph.codegen.onnx import compile_graph

        with tqdm(
            total=len(graph.nodes), desc=f"lowering {graph.name}", unit="node", leave=False
        ) as bar:

            def progress(i: int, total: int) -> None:
                bar.update(i - bar.n)

            result = compile_graph(
                graph,
                out,
                flavour=flavour,
                dtype=dtype,
                force=force,
                progress=progress,
                extra_files=extra,
                passes=ran,
                default_passes=False,
            )
    else:
        from irgraph.codegen.tvm.artifact import compile_graph as compile_tvm

        with tqdm(total=1, desc=f"building {graph.name} for {target}", leave=False) as bar:
            result = compile_tvm(
                graph,
                out,
                target=target,
                cuda_arch=cuda_arch,
                force=force,
                extra_files=extra,
                passes=ran,
                default_passes=False,
            )
            bar.update(1)
    files = sorted(p.name for p in result.iterdir())
    click.echo(f"compiled {graph.name} for {target} -> {result} ({', '.join(files)})")
    if check:
        _check_artifact(graph, result, 1e-4 if dtype == "f32" or target != "onnx" else 5e-2)


def _check_artifact(graph: Graph, folder: Path, tolerance: float) -> None:
    """Max |logits - interpreter| for a short prompt, prefill and token by token; fails above tolerance."""
    import numpy as np

    import irgraph.runtimes
    from irgraph import lm

    session = irgraph.runtimes.open(folder)
    vocab = int(graph.meta.get("vocab_size") or 2)
    ids = np.random.default_rng(0).integers(0, vocab, (1, 6))
    kw = {"encoder_ids": ids} if lm.is_encoder_decoder(session.inputs) else {}
    for decode in (False, True):
        err = float(
            np.abs(
                session.forward(ids, decode=decode, **kw)
                - lm.interpret(graph, ids, decode=decode, **kw)
            ).max()
        )
        click.echo(
            f"check {'decode' if decode else 'prefill'}: max |logits - interpreter| = {err:.2e}"
        )
        if not err <= tolerance:
            raise click.ClickException(
                f"compiled logits differ from the interpreter by {err:.2e} "
                f"(tolerance {tolerance:g})"
            )
