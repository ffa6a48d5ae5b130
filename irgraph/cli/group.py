"""How the `irgraph` command reports a failure: one line on stderr, a traceback only on request.

Every failure ends the same way, whichever verb raised it:

    Error: <message naming the file, key, option or node>            exit 1  (irgraph's errors)
    Error: Invalid value for '--seed': ... (see 'irgraph run -h')    exit 2  (usage errors)
    Error: internal error: KeyError: 'x'; rerun with --debug ...     exit 70 (a bug in irgraph)

`irgraph --debug VERB ...` (or IRGRAPH_DEBUG=1) prints the Python traceback
before that line. OSError (a missing or unreadable file, a full disk) is the
user's environment, not a bug: it is reported like irgraph's own errors.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from irgraph.errors import IrgraphError

INTERNAL_ERROR = 70  # sysexits' EX_SOFTWARE: distinct from bad input (1) and usage (2)
DEBUG_FLAG = "--debug"


def wants_debug(args: Sequence[str]) -> bool:
    """Whether --debug comes before the verb (the group's options end at the first non-option)."""
    if os.environ.get("IRGRAPH_DEBUG", "") not in ("", "0"):
        return True
    for arg in args:
        if arg == DEBUG_FLAG:
            return True
        if not arg.startswith("-"):
            return False
    return False


class IrgraphGroup(click.Group):
    """A click group whose failures are one `Error: ...` line and an exit status (see above)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:  # a caller that handles exceptions itself gets them raw
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        debug = wants_debug(argv)
        for arg in argv:  # no shell passes one, but a caller can; every path API refuses it
            if "\x00" in arg:
                fail(f"argument {arg!r} contains a NUL byte", 2, False)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} -h')" if e.ctx is not None else ""
            fail(f"{e.format_message().rstrip('.')}{hint}", e.exit_code, debug)
        except click.ClickException as e:
            fail(e.format_message(), e.exit_code, debug)
        except (IrgraphError, OSError) as e:
            fail(str(e) or type(e).__name__, 1, debug)
        except Exception as e:  # a bug: still one line, and a way to see more
            more = "" if debug else f"; rerun with {DEBUG_FLAG} for the traceback"
            fail(f"internal error: {type(e).__name__}: {e}{more}", INTERNAL_ERROR, debug)
        # With standalone_mode=False click returns --help's / --version's exit code as rv.
        sys.exit(rv if isinstance(rv, int) else 0)


def fail(message: str, code: int, debug: bool) -> None:
    """Print the traceback (under --debug) and the one-line message to stderr, and exit."""
    if debug:
        traceback.print_exc()
    click.echo(f"Error: {message.strip()}", err=True)
    sys.exit(code)
