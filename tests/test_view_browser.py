"""`irgraph view` pages in a real browser (slow tier): headless Chromium loads each page with
no console message, the script finishes (`data-ready`) and the screenshot shows a graph.

Chromium is Debian's `chromium` (installed here with apt-get when running as root); the
tests are skipped, with the reason, where there is none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import irgraph
from irgraph import model_zoo
from irgraph.cli import main
from tests.helpers.png import read_png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=900, check=False
        )
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("no chromium (apt-get install -y chromium as root)")
    return found


def browse(chromium: str, page: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
    return subprocess.run(
        [chromium, "--headless", "--disable-gpu", *sandbox, "--enable-logging=stderr", "--v=0"]
        + ["--virtual-time-budget=15000", "--window-size=1400,900", *flags, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )


def pages(root: Path) -> dict[str, Path]:
    irgraph.save(model_zoo.build("llama-2", size="tiny"), root / "a")
    runs = {
        "deepseek-v2.html": ["view", "deepseek-v2", "-o", root / "deepseek-v2.html"],
        "llama-3.1.html": ["view", "llama-3.1", "-o", root / "llama-3.1.html"],
        "fuse-qkv.html": ["opt", root / "a", "--passes", "fuse-qkv", "-o", root / "b"]
        + ["--view", root / "fuse-qkv.html"],
    }
    for args in runs.values():
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    return {name: root / name for name in runs}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    return pages(tmp_path_factory.mktemp("browser"))


@pytest.mark.parametrize("name", ["deepseek-v2.html", "llama-3.1.html", "fuse-qkv.html"])
def test_chromium_renders_the_page(chromium, written, name, tmp_path):
    dom = browse(chromium, written[name], "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    assert 'data-ready="1"' in dom.stdout  # the script ran to its end
    vertices = dom.stdout.count('class="vertex')
    assert vertices >= (30 if name == "fuse-qkv.html" else 60)  # layers drawn, folded or not
    if name == "fuse-qkv.html":
        assert dom.stdout.count('class="vertex node removed') == 6
        assert dom.stdout.count('class="vertex node added') == 4
    shot = tmp_path / "shot.png"
    run = browse(chromium, written[name], f"--screenshot={shot}")
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    pixels = read_png(shot)[40:, :980, :3]  # the drawing, below the toolbar, left of the table
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    ink = (pixels.min(axis=2) < 200).mean()
    assert len(colours) > 20 and ink > 0.002, (len(colours), ink)
