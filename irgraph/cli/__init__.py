"""The `irgraph` command line. Each verb lives in its own module of this package."""

from __future__ import annotations

import click

from irgraph.cli import (
    compile_cmd,
    eval_cmd,
    explain_cmd,
    export_hf_cmd,
    generate_cmd,
    import_cmd,
    import_gguf_cmd,
    inspect_cmd,
    opt_cmd,
    passes_cmd,
    run_cmd,
    train_cmd,
    view_cmd,
    zoo_cmd,
)
from irgraph.cli.group import DEBUG_FLAG, IrgraphGroup
from irgraph.cli.progress import set_quiet


@click.group(cls=IrgraphGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="irgraph")
@click.option(
    DEBUG_FLAG, is_flag=True, help="Show the Python traceback of a failure (also IRGRAPH_DEBUG=1)."
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Draw no progress bars (they are drawn on stderr only when it is a terminal).",
)
def main(debug: bool, quiet: bool) -> None:
    """irgraph: declare, transform, compile and run large-language-model graphs.

    A failure prints one `Error: ...` line and exits non-zero: 1 for bad input,
    2 for bad usage, 70 for an internal error (a bug; --debug shows where).
    Long steps (import, lowering, build, calibration, training) show a progress
    bar on a terminal; --quiet turns it off.
    """
    set_quiet(quiet)


main.add_command(inspect_cmd.inspect)
main.add_command(run_cmd.run)
main.add_command(passes_cmd.passes)
main.add_command(explain_cmd.explain)
main.add_command(opt_cmd.opt)
main.add_command(train_cmd.train)
main.add_command(import_cmd.import_hf)
main.add_command(import_gguf_cmd.import_gguf)
main.add_command(export_hf_cmd.export_hf)
main.add_command(compile_cmd.compile_)
main.add_command(generate_cmd.generate)
main.add_command(eval_cmd.eval_)
main.add_command(zoo_cmd.zoo)
main.add_command(view_cmd.view)
