"""Plots for the benchmark tables, for people who would rather look than read.

    from benchmarks.plots import speed_race, bpb_vs_size
    speed_race(json.loads(Path("benchmarks/results/decode.json").read_text()), "decode.png")
    bpb_vs_size([{"label": "gptq w4 g32", "size_mib": 3.2, "bits_per_byte": 1.91,
                  "group": "gptq"}, ...], "quantization.png")

`speed_race` draws `benchmarks/decode.py`'s results: decode tokens/s per system as
bars, each with its roofline (the row's own `roofline_tps` when it has one, e.g. a
quantized system that streams fewer weight bytes, else the run's `roofline` row)
as a mark on the same row. `bpb_vs_size` draws a quantization or pruning table:
held-out bits per byte against model size, one point per row, labelled, with a
line through each `group` (a method) in size order.

Needs matplotlib (`pip install 'irgraph[plot]'`); drawn with its object API (no
pyplot, no display). `python benchmarks/plots.py decode RESULTS.json OUT.png` redraws
a saved decode run.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOFLINE = "roofline"
BAR = "#4575b4"
MARK = "#d73027"


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SystemExit(
            "plots need matplotlib: pip install 'irgraph[plot]' (or matplotlib)"
        ) from None
    return Figure(figsize=(width, height), layout="constrained")


def speed_race(results: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Decode tok/s per system with each row's roofline; `results` is decode.json's object."""
    rows = results["results"]
    roof = rows.get(ROOFLINE, {}).get("decode_tps")
    systems = [name for name in rows if name != ROOFLINE]
    if not systems:
        raise ValueError("no systems to plot (only a roofline row)")
    fig = _figure(8, 1.2 + 0.5 * len(systems))
    ax = fig.subplots()
    y = list(range(len(systems)))[::-1]  # the table's first row on top
    speeds = [float(rows[s]["decode_tps"]) for s in systems]
    ax.barh(y, speeds, color=BAR, height=0.6, label="decode tok/s (median)")
    for yi, speed in zip(y, speeds):
        ax.text(speed, yi, f" {speed:.1f}", va="center", fontsize=8)
    marks = [(yi, rows[s].get("roofline_tps") or roof) for yi, s in zip(y, systems)]
    marks = [(yi, r) for yi, r in marks if r and math.isfinite(float(r))]
    if marks:
        for n, (yi, r) in enumerate(marks):
            ax.plot(
                [r, r],
                [yi - 0.4, yi + 0.4],
                color=MARK,
                lw=2,
                label="roofline (weights streamed / bandwidth)" if n == 0 else None,
            )
            share = speeds[y.index(yi)] / float(r)
            ax.text(r, yi, f" {share:.0%} of roofline", color=MARK, fontsize=7, va="center")
    ax.set_yticks(y, systems)
    ax.set_xlabel("decode tokens / s")
    ax.set_xlim(0, max([*speeds, *(float(r) for _, r in marks)]) * 1.2)
    dims = results.get("dims", {})
    ax.set_title(
        title
        or f"decode speed, batch 1, {results.get('tokens', '?')} + {results.get('tokens', '?')} "
        f"tokens, {results.get('threads', '?')} thread(s), hidden {dims.get('hidden_size', '?')}"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def bpb_vs_size(
    rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "bits per byte vs size"
) -> Path:
    """Held-out bits per byte against size; rows: {label, size_mib, bits_per_byte[, group]}."""
    if not rows:
        raise ValueError("no rows to plot")
    fig = _figure(7, 4.5)
    ax = fig.subplots()
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get("group", "")), []).append(r)
    for group, members in groups.items():
        members = sorted(members, key=lambda r: float(r["size_mib"]))
        xs = [float(r["size_mib"]) for r in members]
        ys = [float(r["bits_per_byte"]) for r in members]
        ax.plot(xs, ys, "o-" if len(members) > 1 else "o", label=group or None)
        for x, y_, r in zip(xs, ys, members):
            ax.annotate(
                str(r["label"]), (x, y_), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.margins(x=0.15, y=0.1)
    ax.set_xlabel("size (MiB, log scale)")
    ax.set_ylabel("held-out bits per byte (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if any(groups):
        ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "decode":
        raise SystemExit("usage: python benchmarks/plots.py decode RESULTS.json OUT.png")
    print(speed_race(json.loads(Path(args[1]).read_text()), args[2]))


if __name__ == "__main__":
    main()
