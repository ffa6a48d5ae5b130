"""mypy over irgraph/, passes/, model_zoo/, runtimes/ and codegen/ (STYLE.md: public APIs typed
and checked), settings in pyproject.toml.

Installed, `passes/` is `irgraph.passes`, `codegen/` is `irgraph.codegen` and so on (setuptools
package-dir), which mypy cannot see through the editable-install hook; so the check runs on a
tree of symlinks with the installed layout and reports errors under their real paths.

    .venv/bin/pytest tests/test_typecheck.py        (about 20 s on 2 cores)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

mypy_api = pytest.importorskip(
    "mypy.api", reason="mypy is in the dev extra: pip install -e '.[dev]'"
)

ROOT = Path(__file__).resolve().parents[1]
CHECKED = {
    "irgraph": "irgraph",
    "passes": "irgraph/passes",
    "model_zoo": "irgraph/model_zoo",
    "runtimes": "irgraph/runtimes",
    "codegen": "irgraph/codegen",
}  # folder -> where it sits in the installed layout


def installed_layout(dest: Path) -> Path:
    """`dest/irgraph/...` in the installed package layout, each entry a symlink to the checkout."""
    pkg = dest / "irgraph"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "irgraph").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for folder, target in CHECKED.items():
        if folder != "irgraph":
            (dest / target).symlink_to(ROOT / folder)
    return dest


def real_path(line: str) -> str:
    """An error line with its installed-layout path turned back into the checkout's."""
    for folder, target in sorted(CHECKED.items(), key=lambda kv: -len(kv[1])):
        if line.startswith(target + "/"):
            return folder + line[len(target) :]
    return line


@pytest.fixture(autouse=True)
def keep_recursion_limit():
    """mypy raises the interpreter's recursion limit and leaves it raised; later tests in the
    same process (JSON nested too deep in tests/test_bad_inputs.py) rely on the default one."""
    limit = sys.getrecursionlimit()
    yield
    sys.setrecursionlimit(limit)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One mypy cache for both tests: its paths are tree-relative, so the second run reuses it."""
    return tmp_path_factory.mktemp("mypy_cache")


def test_mypy_is_clean_on_checked_folders(tmp_path, monkeypatch, cache):
    tree = installed_layout(tmp_path / "tree")
    monkeypatch.chdir(tree)
    stdout, stderr, status = mypy_api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache), "irgraph"]
    )
    report = "\n".join(real_path(line) for line in stdout.splitlines())
    assert status == 0, (
        f"mypy found errors (settings: pyproject.toml [tool.mypy]):\n{report}\n{stderr}"
    )
    # Not vacuous: every module of the CHECKED folders was among those checked.
    expected = sum(1 for folder in CHECKED for _ in (ROOT / folder).rglob("*.py"))
    checked = int(report.rsplit("no issues found in ", 1)[1].split()[0])
    assert checked >= expected, report


def test_mypy_reports_errors_in_relocated_folders(tmp_path, monkeypatch, cache):
    """The layout really checks every relocated folder (passes/, model_zoo/, runtimes/,
    codegen/): a type error planted in each is reported under its real path."""
    tree = installed_layout(tmp_path / "tree")
    planted = []
    for folder, target in CHECKED.items():
        if folder == "irgraph":
            continue
        (tree / target).unlink()
        shadow = tree / target
        shadow.mkdir()
        for entry in (ROOT / folder).iterdir():
            if entry.name != "__pycache__":
                (shadow / entry.name).symlink_to(entry)
        (shadow / "planted.py").write_text(
            "from irgraph.ir import Graph\n\n\ndef f(g: Graph) -> int:\n    return g.name\n"
        )
        planted.append(f"{target}/planted.py")
    monkeypatch.chdir(tree)
    stdout, _, status = mypy_api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache), *planted]
    )
    assert status == 1
    errors = sorted(real_path(line) for line in stdout.splitlines() if ": error:" in line)
    assert [e.split(": error: ")[0] for e in errors] == sorted(
        f"{folder}/planted.py:5" for folder in CHECKED if folder != "irgraph"
    ), stdout
    assert all("Incompatible return value" in e for e in errors), stdout
