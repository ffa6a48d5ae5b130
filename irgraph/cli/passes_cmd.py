"""`irgraph passes list`: every registered pass with its kind, options and what it does."""

from __future__ import annotations

import click

from irgraph.backends import backend_for, compile_targets
from irgraph.cli.compile_cmd import default_passes


@click.group()
def passes() -> None:
    """Graph-to-graph passes."""


@passes.command("list")
@click.option(
    "--target",
    type=click.Choice(compile_targets()),
    default=None,
    help="Also show the default pipeline `irgraph compile` runs for this target.",
)
def list_passes(target: str | None) -> None:
    """List the passes a pipeline (--passes) may name."""
    from irgraph.passes import PASSES
    from irgraph.passes.manager import option_specs

    if target is not None:
        base = default_passes(target)
        click.echo(f"default passes for {target}: {base or '(none)'}")
        for option in backend_for(target).options:  # the option values that change them
            for choice in option.choices:
                other = default_passes(target, {option.name: choice})
                if other != base:
                    click.echo(f"  with {option.flag} {choice}: {other or '(none)'}")

    for name in sorted(PASSES):
        cls = PASSES[name]
        click.echo(f"{name:<26} {cls.kind:<12} {cls.summary}")
        for spec in option_specs(cls):
            click.echo(f"{'':<26}   {spec.describe()}")
