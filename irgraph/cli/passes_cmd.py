"""`irgraph passes list`: every registered pass with its kind, options and what it does."""

from __future__ import annotations

import click

from irgraph.cli.common import clean_errors
from irgraph.cli.compile_cmd import TARGETS, default_passes


@click.group()
def passes() -> None:
    """Graph-to-graph passes."""


@passes.command("list")
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default=None,
    help="Also show the default pipeline `irgraph compile` runs for this target.",
)
@clean_errors
def list_passes(target: str | None) -> None:
    """List the passes a pipeline (--passes) may name."""
    from irgraph.passes import PASSES
    from irgraph.passes.manager import option_specs, type_name

    if target == "onnx":
        from irgraph.codegen.onnx import FLAVOURS

        for flavour in FLAVOURS:
            click.echo(
                f"default passes for onnx --flavour {flavour}: {default_passes(target, flavour)}"
            )
    elif target is not None:
        click.echo(f"default passes for {target}: {default_passes(target)}")

    for name in sorted(PASSES):
        cls = PASSES[name]
        click.echo(f"{name:<26} {cls.kind:<12} {cls.summary}")
        for opt, t, default in option_specs(cls):
            shown = (
                str(default).lower()
                if isinstance(default, bool)
                else repr(default)
                if default == ""
                else default
            )
            click.echo(f"{'':<26}   {opt}: {type_name(t)} = {shown}")
