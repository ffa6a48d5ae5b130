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
    from irgraph.passes.manager import option_specs, type_name

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
