"""`irgraph compile SOURCE --target onnx -o ART`: graph, HF checkpoint or zoo model -> artifact."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import click

from irgraph.backends import BACKENDS, backend_for, compile_options, compile_targets
from irgraph.cli import calibration as calib
from irgraph.cli import progress
from irgraph.cli.common import weight_options
from irgraph.cli.compile_checks import check_lm_outputs, load_check, refuse_inapplicable_options
from irgraph.cli.output_rule import (
    check_output_option,
    force_option,
    output_folder_option,
    report_replaced,
)
from irgraph.cli.pass_options import apply_pipeline, pipeline_options
from irgraph.errors import ConfigError
from irgraph.finite import check_finite
from irgraph.ir import Graph
from irgraph.model_zoo import SIZES, Size

TOKENIZER = "tokenizer.json"


def default_passes(target: str, options: Mapping[str, str] | None = None) -> str:
    """The pipeline `compile` runs for `target` after --passes, given its compile options."""
    backend = backend_for(target)
    chosen = {o.name: o.default for o in backend.options} | dict(options or {})
    return backend.default_pipeline(chosen)


def load_source(
    source: str, size: Size, seed: int, *, cast_weights: bool = False
) -> tuple[Graph, dict[str, Path]]:
    """The graph SOURCE names and files to carry into the artifact (tokenizer.json).

    An existing folder is a saved graph (graph.irg) or a Hugging Face checkpoint
    (config.json); anything else is a zoo model name. `cast_weights`: see `serialize.load`.
    """
    from irgraph.serialize import is_graph_dir, load_with_weights

    path = Path(source)
    if path.is_dir():
        extra = {TOKENIZER: path / TOKENIZER} if (path / TOKENIZER).is_file() else {}
        if is_graph_dir(path):
            return load_with_weights(path, cast_weights=cast_weights), extra
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

    if looks_like_a_path(source):
        raise ConfigError("does not exist (SOURCE is a folder or a zoo model name)", where=source)
    try:
        model_zoo.get(source)
    except ConfigError as e:
        raise ConfigError(
            f"not a folder, and {e.message}", expected=e.expected, where=source
        ) from None
    return model_zoo.build(source, size=size, seed=seed), {}


def looks_like_a_path(source: str) -> bool:
    """Zoo names are bare words ('llama-2'); 'ckpt/llama', './x', '~/x' or 'x.irg' are paths."""
    return (
        any(c in source for c in "/\\~")
        or source.startswith(".")
        or source.endswith((".irg", ".json", ".safetensors"))
    )


def _backend_options(command: Callable[..., None]) -> Callable[..., None]:
    """One `--option` per backend compile option in the backend table, its help naming backends."""
    for option in reversed(compile_options()):
        users = ", ".join(b.name for b in BACKENDS if any(o.name == option.name for o in b.options))
        command = click.option(
            option.flag,
            option.name,
            type=click.Choice(option.choices),
            default=option.default,
            show_default=True,
            help=f"{users}: {option.help}",
        )(command)
    return command


_TARGET_HELP = "; ".join(f"{' | '.join(b.targets)}: {b.help}" for b in BACKENDS if b.compile)


@click.command("compile")
@click.argument("source")
@click.option(
    "--target",
    type=click.Choice(compile_targets()),
    default="onnx",
    show_default=True,
    help=_TARGET_HELP + ".",
)
@_backend_options
@click.option(
    "--size",
    type=click.Choice(SIZES),
    default="tiny",
    show_default=True,
    help="Zoo models: size to build.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Zoo models: weight seed.",
)
@output_folder_option("Artifact folder")
@force_option
@click.option(
    "--no-default-passes",
    is_flag=True,
    help="Skip the target's default passes, run after --passes "
    "(`irgraph passes list --target T` shows them).",
)
@click.option(
    "--no-load-check",
    is_flag=True,
    help="Do not open the artifact and run one token through it after writing it "
    "(for an artifact built for another machine's runtime, e.g. --dtype bf16 for a GPU).",
)
@weight_options
@partial(
    pipeline_options,
    check_help="Check the artifact against the interpreter (the logits of a short prompt, "
    "prefill and decode), and every pass run before it (see --check-mode).",
)
def compile_(
    source: str,
    target: str,
    size: Size,
    seed: int,
    out: str,
    force: bool,
    no_default_passes: bool,
    passes: str,
    print_after: tuple[str, ...],
    check: bool,
    allow_arch_change: bool,
    timing: bool,
    check_mode: str,
    no_load_check: bool,
    cast_weights: bool,
    allow_nonfinite: bool,
    **options: Any,
) -> None:
    """Compile SOURCE (saved graph folder, HF checkpoint folder or zoo model) to an artifact."""
    calibration = calib.from_options(options)  # the rest of `options` are the backend's
    if passes:  # parsed alone, before any work, so that an error quotes the user's own text
        from irgraph.passes import parse_pipeline

        parse_pipeline(passes)
    replaced = check_output_option(out, [source], force)
    graph, extra = load_source(source, size, seed, cast_weights=cast_weights)
    if not allow_nonfinite:
        check_finite(graph, where=source)
    backend = backend_for(target)
    refuse_inapplicable_options(backend, target)
    defaults = "" if no_default_passes else default_passes(target, options)
    pipeline = ",".join(p for p in (passes, defaults) if p)
    graph = apply_pipeline(
        graph,
        pipeline,
        print_after,
        check,
        allow_arch_change,
        timing,
        check_mode=check_mode,
        calibration=calibration,
        tokenizer=extra.get(TOKENIZER),
        check_needs_passes=False,
    )
    check_lm_outputs(graph)
    compile_graph = backend.load("compile")
    with progress.reporter() as report:
        result = compile_graph(
            graph,
            out,
            target=target,
            force=force,
            progress=report,
            extra_files=extra,
            passes={"user": passes, "default": defaults},
            default_passes=False,
            **{o.name: options[o.name] for o in backend.options},
        )
    report_replaced(out, replaced)
    files = sorted(p.name for p in result.iterdir())
    click.echo(f"compiled {graph.name} for {target} -> {result} ({', '.join(files)})")
    for note in _manifest_notes(result):
        click.echo(f"note: {note}")
    if not no_load_check:
        chosen = {
            o.name: options[o.name] for o in backend.options if backend.applies(o.name, target)
        }
        load_check(result, graph, chosen)
    if check:
        low_precision = backend.name == "onnx" and (
            options["dtype"] != "f32" or options["accuracy_level"] == "4"  # int8 activations
        )
        _check_artifact(graph, result, 5e-2 if low_precision else 1e-4)


def _manifest_notes(folder: Path) -> list[str]:
    """The `notes` a backend left in the manifest (GGUF: tensors that kept a fallback type)."""
    import json

    notes = json.loads((folder / "manifest.json").read_text()).get("notes") or []
    return [str(n) for n in notes]


def _check_artifact(graph: Graph, folder: Path, tolerance: float) -> None:
    """Max |logits - interpreter| on a short prompt, prefill and per token; fails over tolerance."""
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
