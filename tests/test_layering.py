"""The layering, checked from the source: every import (inside functions too) points down.

    cli  ->  codegen  ->  passes  ->  core
     |          `-------------------> core
     |-->  runtimes  ---------------> core   (never codegen: the artifact format is core)
     `-->  model_zoo  --------------> core

The core is `irgraph/` without `irgraph/cli/`; the other layers are the folders mapped to
`irgraph.<layer>` (pyproject's package-dir). A layer may import itself and the layers
`ALLOWED` lists; anything else is an upward or sideways import, and since `ALLOWED` is
itself acyclic, no import cycle between layers can pass. Backends named as "module:attr"
strings in `irgraph.backends` are loaded at run time, by design, and are not imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LAYERS = ("core", "model_zoo", "passes", "codegen", "runtimes", "cli")
ALLOWED: dict[str, set[str]] = {  # layer -> the layers below it that it may import
    "core": set(),
    "model_zoo": {"core"},
    "passes": {"core"},
    "codegen": {"core", "passes"},
    "runtimes": {"core"},
    "cli": {"core", "model_zoo", "passes", "codegen", "runtimes"},
}
ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {  # source folder (relative to the repository root) -> layer
    "irgraph/cli": "cli",
    "irgraph": "core",
    "model_zoo": "model_zoo",
    "passes": "passes",
    "codegen": "codegen",
    "runtimes": "runtimes",
}


def layer_of_module(name: str) -> str | None:
    """The layer of an imported module name; None for modules outside irgraph (numpy, torch)."""
    parts = name.split(".")
    if parts[0] != "irgraph":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "core"


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) per absolute import in `tree`; `from irgraph import x` counts as irgraph.x."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "irgraph":
                found += [(node.lineno, f"irgraph.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def violations(source: str, filename: str, layer: str) -> list[str]:
    """One message per import in `source` (of a file in `layer`) that the layering forbids."""
    bad = []
    tree = ast.parse(source, filename)
    for line, module in imported_modules(tree):
        target = layer_of_module(module)
        if target is None or target == layer or target in ALLOWED[layer]:
            continue
        bad.append(f"{filename}:{line}: {layer} imports {module} ({target} is not below {layer})")
    relative = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    bad += [f"{filename}:{n.lineno}: relative import (name the module)" for n in relative]
    return bad


def layer_of_file(path: Path, root: Path) -> str | None:
    rel = path.relative_to(root).as_posix()
    for folder, layer in FOLDERS.items():  # irgraph/cli before irgraph
        if rel.startswith(folder + "/"):
            return layer
    return None


def scan(root: Path) -> list[str]:
    """Every forbidden import in the layered folders under `root`."""
    bad = []
    for folder in dict.fromkeys(f.split("/")[0] for f in FOLDERS):
        for path in sorted((root / folder).rglob("*.py")):
            layer = layer_of_file(path, root)
            if layer is not None:
                rel = path.relative_to(root).as_posix()
                bad += violations(path.read_text(), rel, layer)
    return bad


def test_the_layer_table_is_acyclic():
    order: list[str] = []
    pending = dict(ALLOWED)
    while pending:
        ready = [layer for layer, deps in pending.items() if deps <= set(order)]
        assert ready, f"the layer table has a cycle among {sorted(pending)}"
        order += ready
        for layer in ready:
            del pending[layer]
    assert set(order) == set(LAYERS)


def test_every_import_points_down():
    bad = scan(ROOT)
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_the_check_sees_the_folders():
    """The scan reads the real tree (a wrong root would pass vacuously)."""
    files = {
        layer_of_file(p, ROOT) for f in ("irgraph", "runtimes") for p in (ROOT / f).rglob("*.py")
    }
    assert {"core", "cli", "runtimes"} <= files
    assert any(
        m == "irgraph.errors"
        for _, m in imported_modules(ast.parse((ROOT / "runtimes/__init__.py").read_text()))
    )


@pytest.mark.parametrize(
    "layer, source, offending",
    [
        (
            "runtimes",
            "def f():\n    from irgraph.codegen.tvm.artifact import WEIGHTS\n",
            "irgraph.codegen.tvm.artifact",
        ),
        ("core", "import irgraph.passes.manager\n", "irgraph.passes.manager"),
        ("passes", "from irgraph import codegen\n", "irgraph.codegen"),
        ("model_zoo", "from irgraph.passes import dce\n", "irgraph.passes"),
        ("codegen", "from irgraph.runtimes.base import Session\n", "irgraph.runtimes.base"),
    ],
)
def test_a_planted_upward_import_fails(layer, source, offending):
    bad = violations(source, f"{layer}/planted.py", layer)
    assert len(bad) == 1 and f"{layer}/planted.py:" in bad[0] and offending in bad[0], bad


def test_a_planted_import_in_a_tree_fails(tmp_path):
    (tmp_path / "runtimes").mkdir()
    (tmp_path / "runtimes" / "ok.py").write_text("from irgraph.artifact import read_manifest\n")
    (tmp_path / "runtimes" / "bad.py").write_text(
        "import os\n\n\ndef g():\n    import irgraph.codegen.onnx\n"
    )
    assert scan(tmp_path) == [
        "runtimes/bad.py:5: runtimes imports irgraph.codegen.onnx (codegen is not below runtimes)"
    ]
