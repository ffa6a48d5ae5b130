"""The pass-pipeline options shared by `irgraph opt` and `irgraph compile`.

@click.command()
@pipeline_options
def compile(path, ..., passes, print_after, check, allow_arch_change, timing, check_mode): ...
    graph = apply_pipeline(graph, passes, print_after, check, allow_arch_change, timing,
                           check_mode=check_mode)

Passes run with a PassContext whose progress is the CLI's bar (progress.py), whose warnings go to
stderr, whose calibration batches come from --calibration (calibration.py) and whose gradients
come from the torch backend (loaded only if a pass asks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from irgraph.cli.calibration import Calibration, calibration_options
from irgraph.ir import Graph
from irgraph.passes.equivalence import CHECK_MODES

CHECK_HELP = (
    "Check every pass against the interpreter (see --check-mode); "
    "fail an exact pass that changes the outputs."
)


def pipeline_options(fn: Callable[..., Any], check_help: str = CHECK_HELP) -> Callable[..., Any]:
    """Add --passes, --print-after, --check, --check-mode, --allow-arch-change, --timing and
    the calibration options (calibration.py; `calibration.from_options` collects them)."""
    options = [
        click.option(
            "--passes",
            default="",
            help='Pass pipeline, e.g. "cse,fuse-parallel-attention,dce" '
            "(see `irgraph passes list`).",
        ),
        click.option(
            "--print-after",
            multiple=True,
            metavar="PASS",
            help="Print the IR after this pass (repeatable; 'all' for every pass).",
        ),
        click.option("--check", is_flag=True, help=check_help),
        click.option(
            "--check-mode",
            type=click.Choice(["auto", *CHECK_MODES]),
            default="auto",
            show_default=True,
            help="random-io: the same random inputs and KV caches into both graphs; end-to-end: "
            "the same token ids, prefill then decode steps, each graph with its own cache "
            "(for passes that change the cache); auto: each pass's own mode.",
        ),
        click.option(
            "--allow-arch-change",
            is_flag=True,
            help="Allow passes that change the architecture (the model then needs fine-tuning).",
        ),
        click.option("--timing", is_flag=True, help="Print per-pass timing to stderr."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return calibration_options(fn)


def apply_pipeline(
    graph: Graph,
    passes: str,
    print_after: tuple[str, ...],
    check: bool,
    allow_arch_change: bool,
    timing: bool,
    *,
    check_mode: str = "auto",
    calibration: Calibration | None = None,
    tokenizer: Path | None = None,
    check_needs_passes: bool = True,
) -> Graph:
    """Run the pipeline from the CLI options; the IR after --print-after passes goes to stdout.

    Calibration text is encoded with `tokenizer` (the graph's tokenizer.json), else as bytes.
    `check_needs_passes=False`: --check has more to check than passes (compile's artifact).
    """
    if not passes:
        if (
            print_after
            or (check and check_needs_passes)
            or allow_arch_change
            or (calibration and calibration.paths)
        ):
            raise click.BadParameter("needs a pipeline", param_hint="--passes")
        return graph
    from irgraph.cli import progress
    from irgraph.cli.providers import TorchGradients
    from irgraph.feeds import index_bounds
    from irgraph.passes import PassContext, run_pipeline
    from irgraph.tokenizer import model_vocab

    calibration = calibration or Calibration()
    batches = calibration.batches(tokenizer, model_vocab(index_bounds(graph), graph.meta))

    def show(p: Any, g: Graph) -> None:
        click.echo(f"// IR after {p}")
        click.echo(str(g), nl=False)

    with progress.reporter() as report:
        result = run_pipeline(
            graph,
            passes,
            ctx=PassContext(
                calibration=batches,
                seed=calibration.seed,
                progress=report,
                log=progress.note,
                gradients=TorchGradients(),
            ),
            check=check,
            check_mode=None if check_mode == "auto" else check_mode,
            allow_arch_change=allow_arch_change,
            print_after=print_after,
            on_print=show,
        )
    if timing or check:
        click.echo(result.table(), err=True)
    return result.graph
