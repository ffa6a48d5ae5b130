"""`irgraph passes list`: every registered pass with its kind, options and what it does."""

from __future__ import annotations

import json
from typing import Any

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
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object: {"passes": [{name, kind, summary, options}], and with --target '
    '"default_passes": {target, pipeline, with: {option: {value: pipeline}}}}.',
)
def list_passes(target: str | None, as_json: bool) -> None:
    """List the passes a pipeline (--passes) may name."""
    from irgraph.passes import PASSES
    from irgraph.passes.manager import option_specs, type_name

    defaults: dict[str, Any] | None = None
    if target is not None:
        base = default_passes(target)
        variants: dict[str, dict[str, str]] = {}
        for option in backend_for(target).options:  # the option values that change them
            for choice in option.choices:
                other = default_passes(target, {option.name: choice})
                if other != base:
                    variants.setdefault(option.flag, {})[choice] = other
        defaults = {"target": target, "pipeline": base, "with": variants}
    if as_json:
        rows = [
            {
                "name": name,
                "kind": PASSES[name].kind,
                "summary": PASSES[name].summary,
                "options": [
                    {
                        "name": spec.name,
                        "type": type_name(spec.type),
                        "default": _jsonable(spec.default),
                        "allowed": spec.allowed(),
                        "doc": spec.doc,
                    }
                    for spec in option_specs(PASSES[name])
                ],
            }
            for name in sorted(PASSES)
        ]
        out: dict[str, Any] = {"passes": rows}
        if defaults is not None:
            out["default_passes"] = defaults
        click.echo(json.dumps(out, indent=1))
        return
    if defaults is not None:
        click.echo(f"default passes for {target}: {defaults['pipeline'] or '(none)'}")
        for flag, pipelines in defaults["with"].items():
            for choice, other in pipelines.items():
                click.echo(f"  with {flag} {choice}: {other or '(none)'}")
    for name in sorted(PASSES):
        cls = PASSES[name]
        click.echo(f"{name:<26} {cls.kind:<12} {cls.summary}")
        for spec in option_specs(cls):
            click.echo(f"{'':<26}   {spec.describe()}")


def _jsonable(value: Any) -> Any:
    """An option default as JSON: numbers, strings, booleans and None as they are, else text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return str(value)
