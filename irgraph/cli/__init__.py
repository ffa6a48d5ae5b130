"""The `irgraph` command line. Each verb lives in its own module of this package."""

from __future__ import annotations

import click

from irgraph.cli import inspect_cmd, run_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="irgraph")
def main() -> None:
    """irgraph: declare, transform, compile and run large-language-model graphs."""


main.add_command(inspect_cmd.inspect)
main.add_command(run_cmd.run)
