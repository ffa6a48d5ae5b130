"""`irgraph explain RULE PATH`: where a rewrite rule fires on a saved graph, why not elsewhere."""

from __future__ import annotations

import click

from irgraph.serialize import load


@click.command()
@click.argument("rule")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--only-misses", is_flag=True, help="Show only the places where the rule does not fire."
)
def explain(rule: str, path: str, only_misses: bool) -> None:
    """Explain rewrite RULE (or every rule of a rule-based pass) on the graph at PATH."""
    from irgraph.passes import explain as explain_rule
    from irgraph.passes import find_rules

    rules = find_rules(rule)
    graph = load(path)
    fired = total = 0
    for r in rules:
        for e in explain_rule(r, graph):
            total += 1
            fired += e.fired
            if not (only_misses and e.fired):
                click.echo(str(e))
    click.echo(f"# {rule}: fires at {fired} of {total} candidate places")
