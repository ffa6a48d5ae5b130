"""`irgraph passes list`: every registered pass with its kind, options and what it does."""

from __future__ import annotations

import click

from irgraph.cli.common import clean_errors


@click.group()
def passes() -> None:
    """Graph-to-graph passes."""


@passes.command("list")
@clean_errors
def list_passes() -> None:
    """List the passes a pipeline (--passes) may name."""
    from irgraph.passes import PASSES
    from irgraph.passes.manager import option_specs

    for name in sorted(PASSES):
        cls = PASSES[name]
        click.echo(f"{name:<26} {cls.kind:<12} {cls.summary}")
        for spec in option_specs(cls):
            click.echo(f"{'':<26}   {spec.describe()}")
