"""CLI failures: one `Error:` line and an exit status; a traceback only with --debug."""

from __future__ import annotations

import math

import click
import pytest
from click.testing import CliRunner

import irgraph.cli.inspect_cmd
from irgraph.analysis import cost
from irgraph.cli import main
from irgraph.cli.common import FiniteFloat
from irgraph.cli.group import INTERNAL_ERROR, wants_debug
from irgraph.errors import ConfigError
from irgraph.runtimes.generate import Sampling
from tests.helpers.handbuilt import tiny_llama


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture
def broken_inspect(monkeypatch):
    """`inspect` fails the way a bug in irgraph would, with an exception that is not irgraph's."""

    def load(path: str) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(irgraph.cli.inspect_cmd, "load", load)


def test_an_irgraph_error_is_one_line_and_exit_1(tmp_path):
    result = invoke("inspect", str(tmp_path))
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path}: not an irgraph graph folder: no graph.irg\n"


def test_a_usage_error_is_one_line_and_exit_2(tmp_path):
    result = invoke("inspect", str(tmp_path), "--bogus")
    assert result.exit_code == 2
    assert result.output == "Error: No such option '--bogus' (see 'main inspect -h')\n"
    assert (
        invoke("no-such-verb").output == "Error: No such command 'no-such-verb' (see 'main -h')\n"
    )


def test_an_internal_error_is_one_line_with_its_own_exit_status(broken_inspect, tmp_path):
    result = invoke("inspect", str(tmp_path))
    assert result.exit_code == INTERNAL_ERROR != 1
    assert result.output == (
        "Error: internal error: KeyError: 'oops'; rerun with --debug for the traceback\n"
    )


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback_then_the_line(broken_inspect, tmp_path, how):
    args = ["--debug", "inspect", str(tmp_path)] if how == "flag" else ["inspect", str(tmp_path)]
    result = invoke(*args, env={"IRGRAPH_DEBUG": "1"} if how == "env" else None)
    assert result.exit_code == INTERNAL_ERROR
    lines = result.output.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and 'KeyError("oops")' in result.output
    assert lines[-1] == "Error: internal error: KeyError: 'oops'"


def test_debug_shows_where_an_irgraph_error_came_from(tmp_path):
    result = invoke("--debug", "inspect", str(tmp_path))
    assert result.exit_code == 1 and "Traceback" in result.output
    assert "irgraph/serialize.py" in result.output and ConfigError.__name__ in result.output


def test_debug_is_a_group_option_only():
    assert wants_debug(["--debug", "run", "x"]) and wants_debug(["-h", "--debug"])
    assert not wants_debug(["run", "x", "--debug"]) and not wants_debug([])


def test_success_and_help_exit_0():
    assert invoke("--help").exit_code == 0 and invoke("--debug", "passes", "list").exit_code == 0


def _options(command: click.Command, path: str = "irgraph"):
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _options(sub, f"{path} {name}")
    for param in command.params:
        if isinstance(param, click.Option):
            yield path, param


def test_every_numeric_option_is_range_checked():
    """A plain int/float option takes -1, nan or inf silently; each must state its range."""
    loose = [
        f"{path} {param.opts[-1]}"
        for path, param in _options(main)
        if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType))
        and not isinstance(param.type, (click.IntRange, FiniteFloat))
    ]
    assert loose == []
    floats = [p for _, p in _options(main) if isinstance(p.type, click.types.FloatParamType)]
    assert floats and all(isinstance(p.type, FiniteFloat) for p in floats)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN"])
def test_finite_float_refuses_what_every_range_lets_through(text):
    with pytest.raises(click.BadParameter, match="is not a finite number"):
        FiniteFloat().convert(text, None, None)
    assert FiniteFloat(min=0).convert("0.5", None, None) == 0.5


@pytest.mark.parametrize(
    "kw",
    [{"temperature": math.nan}, {"temperature": math.inf}, {"top_p": math.nan}, {"seed": -1}],
)
def test_sampling_refuses_nan_inf_and_negative_seeds_from_the_api_too(kw):
    with pytest.raises(ConfigError, match="bad sampling options"):
        Sampling(**kw)


def test_cost_refuses_an_empty_context():
    with pytest.raises(ConfigError, match="context length must be at least 1"):
        cost(tiny_llama(), context=0)


def test_a_nul_byte_in_an_argument_is_a_usage_error(tmp_path):
    result = invoke("opt", str(tmp_path), "--passes", "dce", "-o", "a\x00b")
    assert (
        result.exit_code == 2 and result.output == "Error: argument 'a\\x00b' contains a NUL byte\n"
    )
