"""The catalog: every ZooEntry from `model_zoo/entries/*.py`, found by name or alias."""

from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil

from irgraph.errors import ConfigError
from irgraph.model_zoo import entries as _entries
from irgraph.model_zoo.config import ZooEntry


@functools.cache
def catalog() -> dict[str, ZooEntry]:
    """Name -> entry, in the order the entry modules list them (modules alphabetically)."""
    found: dict[str, ZooEntry] = {}
    for info in sorted(pkgutil.iter_modules(_entries.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{_entries.__name__}.{info.name}")
        for entry in getattr(module, "ENTRIES", []):
            if entry.name in found:
                raise ConfigError(f"zoo entry {entry.name!r} defined twice", where=module.__name__)
            found[entry.name] = entry
    return found


@functools.cache
def _aliases() -> dict[str, str]:
    table: dict[str, str] = {}
    for name, entry in catalog().items():
        for key in (name, *entry.aliases):
            key = key.lower()
            if table.get(key, name) != name:
                raise ConfigError(f"zoo alias {key!r} names two models", got=(table[key], name))
            table[key] = name
    return table


def names() -> list[str]:
    return list(catalog())


def get(name: str) -> ZooEntry:
    """The entry for a name or alias (case-insensitive); ConfigError listing the names otherwise."""
    key = _aliases().get(name.lower())
    if key is None:
        close = difflib.get_close_matches(name.lower(), list(_aliases()), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"unknown zoo model {name!r}{hint}", expected=", ".join(names()))
    return catalog()[key]
