"""Decode speed of two commits of irgraph, measured in alternation on the same machine.

    python benchmarks/compare_commits.py OLD NEW [--rounds 3] [--only irgraph-tvm,irgraph-onnx]
        [--quick]

A refactor must not cost speed, but absolute tokens/s drift with machine load by more than the
effect being checked. So each commit's `benchmarks/decode.py` runs in its own process, the two
commits alternating for --rounds rounds (old, new, old, new, ...), and what is compared is each
irgraph system's decode ratio against genai-fp32 measured in the same process: a commit's
median ratio over the rounds, then NEW's median / OLD's median. The same is shown for decode
tokens per CPU-second (the process's CPU time, which time slices lost to other processes do not
inflate): on a loaded machine wall-clock ratios swing with whatever else runs during each
system's turn, CPU-second ratios much less. Both commits use one shared
--work folder, so the Hugging Face checkpoint and genai's build are the same bytes for both.
`--quick` passes decode.py's --quick (4-layer hidden-256 model, 32 + 32 tokens: about a minute
a run instead of several, noisier ratios).

Each commit is checked out with `git worktree add --detach` under --work and imported through
a tree of symlinks with the installed package layout (`irgraph/passes` -> `passes/`, ...), so no
install is needed and the current environment's packages serve both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURES = {"decode_tps": "tok/s", "decode_tokens_per_cpu_second": "tok/CPU-s"}
LAYOUT = {
    "passes": "passes",
    "codegen": "codegen",
    "runtimes": "runtimes",
    "model_zoo": "model_zoo",
}


def checkout(rev: str, work: Path) -> tuple[Path, Path]:
    """(worktree, import root) of `rev`: a detached worktree and a symlink tree of its package."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tree = work / f"tree-{sha[:12]}"
    if not tree.is_dir():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), sha],
            check=True,
        )
    layout = work / f"layout-{sha[:12]}"
    pkg = layout / "irgraph"
    if not pkg.is_dir():
        pkg.mkdir(parents=True)
        for entry in (tree / "irgraph").iterdir():
            (pkg / entry.name).symlink_to(entry)
        for folder, name in LAYOUT.items():
            (pkg / name).symlink_to(tree / folder)
    return tree, layout


def run_once(
    tree: Path, layout: Path, work: Path, only: str, threads: int, quick: bool
) -> dict[str, dict[str, float]]:
    """One decode.py run of the commit in `tree`: per system, its MEASURES."""
    env = {**os.environ, "PYTHONPATH": str(layout), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(tree / "benchmarks" / "decode.py"), "--only", only, "--repeats", "3"]
    cmd += ["--threads", str(threads), "--work", str(work / "decode"), *(["--quick"] * quick)]
    subprocess.run(cmd, check=True, env=env, cwd=work, stdout=subprocess.DEVNULL)
    written = "decode-quick.json" if quick else "decode.json"
    results = json.loads((tree / "benchmarks" / "results" / written).read_text())["results"]
    return {name: {m: r[m] for m in MEASURES} for name, r in results.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="irgraph-tvm,irgraph-onnx")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "benchmarks" / "commits")
    parser.add_argument("--quick", action="store_true", help="decode.py --quick: the small model")
    args = parser.parse_args(argv)
    systems = [s for s in args.only.split(",") if s != "genai-fp32"]
    only = ",".join([*systems, "genai-fp32"])
    commits = {rev: checkout(rev, args.work) for rev in (args.old, args.new)}
    # measure -> commit -> system -> ratio to genai-fp32, one per round
    ratios = {m: {rev: {s: [] for s in systems} for rev in commits} for m in MEASURES}
    absolute = {m: {rev: {s: [] for s in systems} for rev in commits} for m in MEASURES}
    for r in range(args.rounds):
        for rev, (tree, layout) in commits.items():
            got = run_once(tree, layout, args.work, only, args.threads, args.quick)
            for m, unit in MEASURES.items():
                for s in systems:
                    ratios[m][rev][s].append(got[s][m] / got["genai-fp32"][m])
                    absolute[m][rev][s].append(got[s][m])
                shown = ", ".join(f"{s} {got[s][m]:.1f}" for s in [*systems, "genai-fp32"])
                print(f"round {r} {rev}: {shown} {unit}", flush=True)
    for m, unit in MEASURES.items():
        print(f"\ndecode {unit} ratio vs genai-fp32, median of {args.rounds} rounds, ", end="")
        print(f"{args.threads} thread(s)")
        print(f"{'system':<14}{args.old:>14}{args.new:>14}{'new / old':>11}")
        for s in systems:
            old, new = (statistics.median(ratios[m][rev][s]) for rev in commits)
            print(f"{s:<14}{old:>13.3f}x{new:>13.3f}x{new / old:>11.3f}")
    print(f"\nabsolute decode tok/s, median of {args.rounds} rounds (an idle machine only)")
    for s in systems:
        old, new = (statistics.median(absolute["decode_tps"][rev][s]) for rev in commits)
        print(f"{s:<14}{old:>14.1f}{new:>14.1f}{new / old:>11.3f}")


if __name__ == "__main__":
    main()
