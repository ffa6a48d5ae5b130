"""Typed errors with one formatted message (STYLE.md lesson 12).

Every error irgraph raises for bad input is one of these: the message names the
thing at fault (file, line, node, op, option or key) and, where it makes sense,
what was expected and what was found.
"""

from __future__ import annotations

from typing import Any


class IrgraphError(Exception):
    """Base of all irgraph errors; `str(err)` is the whole, formatted message."""

    def __init__(self, message: str, *, expected: Any = None, got: Any = None, where: str = ""):
        self.message = message
        self.expected = expected
        self.got = got
        self.where = where
        super().__init__(self._format())

    def _format(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        parts = [
            f"{k} {v}" for k, v in (("expected", self.expected), ("got", self.got)) if v is not None
        ]
        if parts:
            text += f" ({', '.join(parts)})"
        return text


class IRError(IrgraphError):
    """The IR is malformed: bad text, unknown op, type or shape mismatch."""


class InputError(IRError):
    """Feeds a model refuses: unknown or missing input, wrong dtype or shape, an id or position
    outside its table, more tokens than the context. An IRError because the interpreter, which
    defines what the IR means, has always raised IRError for these."""


class PassError(IrgraphError):
    """A pass failed or was configured wrongly."""


class CodegenError(IrgraphError):
    """A backend cannot lower a graph (missing lowering, unsupported dtype, ...)."""


class ConfigError(IrgraphError):
    """A model config, checkpoint or artifact is invalid (unknown key, bad value)."""


class RuntimeFailure(IrgraphError):
    """A compiled artifact could not be opened or run."""


class DeviceUnavailable(RuntimeFailure):
    """The artifact is sound but runs elsewhere: a CUDA GPU or a board this machine lacks."""
