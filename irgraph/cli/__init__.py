"""The `irgraph` command line. Each verb lives in its own module of this package."""

from __future__ import annotations

import click

from irgraph.cli import (
    compile_cmd,
    explain_cmd,
    generate_cmd,
    import_cmd,
    inspect_cmd,
    opt_cmd,
    passes_cmd,
    run_cmd,
    train_cmd,
    zoo_cmd,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="irgraph")
def main() -> None:
    """irgraph: declare, transform, compile and run large-language-model graphs."""


main.add_command(inspect_cmd.inspect)
main.add_command(run_cmd.run)
main.add_command(passes_cmd.passes)
main.add_command(explain_cmd.explain)
main.add_command(opt_cmd.opt)
main.add_command(train_cmd.train)
main.add_command(import_cmd.import_hf)
main.add_command(compile_cmd.compile_)
main.add_command(generate_cmd.generate)
main.add_command(zoo_cmd.zoo)
