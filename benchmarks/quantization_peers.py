"""irgraph's GPTQ and AWQ side by side with llm-compressor, AutoAWQ and GPTQModel (issue 20 item 4).

    .venv/bin/python -m benchmarks.quantization_peers [--eval-tokens 524288] [--only NAME ...]
        [--venvs /work/venvs] [--keep DIR] [--out benchmarks/results/quantization_peers.json]

The reference model (benchmarks/reference_model.py) goes through export-hf; every method gets
the same calibration windows (quantization_quality's: 128 windows of 512 bytes of the training
split; the byte tokenizer makes token ids the bytes). Peer tools run in their own environments
as subprocesses (benchmarks/peer_quantize.py; irgraph's venv never imports them), each result
comes back through import-hf, and every row is scored as quantization_quality scores: held-out
bits per byte through the reference interpreter (`evaluate`), with the paired difference to
irgraph's own row of the same method and grid (`irgraph.heldout.paired_difference`). Quantize
time is the tool's quantize call (peers) or the pass pipeline (irgraph), on the same machine.

Rows per grid (w4 g32, w3 g32): irgraph's quantize() as its defaults have it (the embedding
rounded to nearest and the LM head at 8 bits, AWQ symmetric), irgraph "matched" (embedding and
LM head float and AWQ asymmetric, as every peer does), irgraph GPTQ "matched mse" (the same with
each group's scale searched, quantize's `mse=true`; printed also against "matched" itself, so
it is measured without the peers' venvs), llm-compressor GPTQ (GPTQModifier) and
AWQ (AWQModifier + QuantizationModifier), AutoAWQ (GEMM; 4 bits only: its packing raises
NotImplementedError on other widths) and GPTQModel. Settings are peer_quantize.py's docstring;
what still differs is MATCHED_NOTES. The venvs are /work/venvs/{peers,autoawq,gptqmodel} (see
tests/helpers/quant_checkpoints.py for how they were made); a missing one is a row that says so.
Peers' log files land in a scratch folder, not the working directory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.quantization_quality import evaluate, split_files
from irgraph.cli.calibration import Calibration
from irgraph.heldout import Score, paired_difference, token_windows
from irgraph.passes import PassContext, run_pipeline
from irgraph.serialize import load

GRIDS = {"w4 g32": (4, 32), "w3 g32": (3, 32)}
FLOAT_ENDS = 'skip="embed.weight,lm_head.weight"'  # what every peer leaves float
IRGRAPH = {  # row -> pipeline template (bits, group)
    "irgraph gptq": "quantize(method=gptq, bits={b}, group={g})",
    "irgraph gptq matched": f"quantize(method=gptq, bits={{b}}, group={{g}}, {FLOAT_ENDS})",
    "irgraph gptq matched mse": (  # each group's scale searched (GPTQ's mse), not min/max
        f"quantize(method=gptq, bits={{b}}, group={{g}}, mse=true, {FLOAT_ENDS})"
    ),
    "irgraph awq": "quantize(method=awq, bits={b}, group={g})",
    "irgraph awq matched": (
        f"quantize(method=awq, bits={{b}}, group={{g}}, sym=false, {FLOAT_ENDS})"
    ),
}
PEERS = {  # row -> (venv, tool, method)
    "llm-compressor gptq": ("peers", "llmcompressor", "gptq"),
    "gptqmodel gptq": ("gptqmodel", "gptqmodel", "gptq"),
    "llm-compressor awq": ("peers", "llmcompressor", "awq"),
    "autoawq awq": ("autoawq", "autoawq", "awq"),
}
UNAVAILABLE = {("autoawq awq", 3): "AutoAWQ 0.2.9's GEMM packing raises for w_bit != 4"}
MATCHED_NOTES = [
    "GPTQ: irgraph, llm-compressor and GPTQModel all damp by 0.01 of mean(diag H), round "
    "columns in act order with static groups, blocks of 128, symmetric; scales f16 "
    "(irgraph, GPTQModel) vs the model's f32 (llm-compressor)",
    "AWQ: irgraph and AutoAWQ search the scale exponent on 20 points and clip each group; "
    "llm-compressor's AWQModifier searches scales (duo scaling) and does not clip",
    "AWQ objective: irgraph's is the block output (attention or MLP) on the first calibration "
    "windows; AutoAWQ's the whole decoder layer's module output; both on float activations",
    "irgraph (defaults) rounds the embedding to nearest and keeps the LM head at 8 bits; "
    "'matched' rows leave both float, as the peers do",
]


def _peer(
    venvs: Path, row: str, bits: int, group: int, base: Path, windows: Path, out: Path
) -> tuple[float, str | None]:
    """Run one peer quantization in its venv; (the tool's seconds, error or None)."""
    venv, tool, method = PEERS[row]
    python = venvs / venv / "bin" / "python"
    if not python.exists():
        return 0.0, f"no environment at {python.parent.parent}"
    worker = Path(__file__).with_name("peer_quantize.py")
    cmd = [str(python), str(worker), tool, method, str(bits), str(group), str(base)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory() as scratch:  # where the tools drop their logs
        proc = subprocess.run(
            [*cmd, str(windows), str(out)], cwd=scratch, env=env, capture_output=True, text=True
        )
    if proc.returncode:
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
        return 0.0, " | ".join(last)[-400:]
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["quantize_s"]), None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=128, help="calibration windows")
    ap.add_argument("--seq", type=int, default=512, help="calibration window length")
    ap.add_argument("--eval-seq", type=int, default=256)
    ap.add_argument("--eval-tokens", type=int, default=524288, help="held-out tokens scored")
    ap.add_argument("--only", nargs="*", help='rows to run, e.g. "autoawq awq w4 g32"')
    ap.add_argument("--venvs", type=Path, default=Path("/work/venvs"), help="peer environments")
    ap.add_argument(
        "--keep",
        type=Path,
        help="keep the exported and quantized checkpoints here; a peer checkpoint already there "
        "(with its peer_quantize.json) is reused, with the time measured when it was made",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "quantization_peers.json",
        help="where the rows go as JSON",
    )
    args = ap.parse_args()
    from benchmarks.reference_model import reference_model
    from irgraph.model_zoo.hf_export import export_to_dir
    from irgraph.model_zoo.hf_import import import_hf

    graph_dir = reference_model(log=lambda m: print(m, flush=True))
    model = load(graph_dir)
    train_files, held_files = split_files()
    texts = tuple(str(f) for f in train_files if f.stat().st_size)  # empty files are refused
    batches = Calibration(texts, args.samples, args.seq, seed=0).batches(None, 256)
    held = np.frombuffer(b"".join(f.read_bytes() for f in held_files), np.uint8)
    windows = token_windows(held.astype(np.int64), args.eval_seq, args.eval_tokens)
    print(
        f"calibration: {args.samples} x {args.seq} bytes; held out: {windows.shape[0]} windows "
        f"of {args.eval_seq}",
        flush=True,
    )
    work = args.keep or Path(tempfile.mkdtemp(prefix="quantization_peers-"))
    work.mkdir(parents=True, exist_ok=True)
    base = work / "base"
    if not (base / "config.json").exists():
        export_to_dir(graph_dir, base, overwrite=True)
    calib = work / "windows.npy"
    np.save(calib, np.concatenate(batches))  # the same windows irgraph's passes get

    rows: list[dict] = []
    scores: dict[str, Score] = {}

    def record(name: str, graph, seconds: float, **extra) -> None:
        scores[name] = evaluate(graph, windows)
        row = {
            "config": name,
            "bits_per_byte": round(scores[name].bits_per_byte, 4),
            "delta": round(scores[name].bits_per_byte - scores["fp32"].bits_per_byte, 4)
            if "fp32" in scores
            else 0.0,
            "quantize_s": round(seconds, 2),
            **extra,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    record("fp32", model, 0.0)
    for grid, (bits, group) in GRIDS.items():
        for name, template in IRGRAPH.items():
            full = f"{name} {grid}"
            if args.only and full not in args.only:
                continue
            pipeline = template.format(b=bits, g=group)
            t0 = time.perf_counter()
            q = run_pipeline(model, pipeline, ctx=PassContext(calibration=batches)).graph
            record(full, q, time.perf_counter() - t0, pipeline=pipeline)
        for name in PEERS:
            full = f"{name} {grid}"
            if args.only and full not in args.only:
                continue
            if (name, bits) in UNAVAILABLE:
                rows.append({"config": full, "error": UNAVAILABLE[name, bits]})
                print(json.dumps(rows[-1]), flush=True)
                continue
            out = work / full.replace(" ", "-")
            made = out / "peer_quantize.json"
            if args.keep and made.exists():
                seconds, error, wall = json.loads(made.read_text())["quantize_s"], None, 0.0
            else:
                t0 = time.perf_counter()
                seconds, error = _peer(args.venvs, name, bits, group, base, calib, out)
                wall = time.perf_counter() - t0
                if error is None:
                    made.write_text(json.dumps({"quantize_s": seconds, "wall_s": wall}))
            if error is None:
                try:
                    record(full, import_hf(out), seconds, wall_s=round(wall, 1))
                    continue
                except Exception as e:  # noqa: BLE001  (the row says why; the others go on)
                    error = f"import-hf: {type(e).__name__}: {e}"[:400]
            rows.append({"config": full, "error": error})
            print(json.dumps(rows[-1]), flush=True)

    comparisons = []
    for grid in GRIDS:
        for name in PEERS:
            method = PEERS[name][2]
            for mine in (f"irgraph {method} {grid}", f"irgraph {method} matched {grid}"):
                peer = f"{name} {grid}"
                if peer in scores and mine in scores:
                    gap, se = paired_difference(scores[mine], scores[peer])
                    comparisons.append(
                        {"irgraph": mine, "peer": peer, "gap": round(gap, 4), "se": round(se, 4)}
                    )
    print("\n| config | bits/byte | Δ vs fp32 | quantize s |\n|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['config']} | — | — | — ({r['error'][:80]}) |")
        else:
            print(
                f"| {r['config']} | {r['bits_per_byte']:.4f} | {r['delta']:+.4f} | "
                f"{r['quantize_s']:.1f} |"
            )
    searched = []  # mse against min/max scales, irgraph's own rows (no peer needed)
    for grid in GRIDS:
        mse, plain = f"irgraph gptq matched mse {grid}", f"irgraph gptq matched {grid}"
        if mse in scores and plain in scores:
            gap, se = paired_difference(scores[mse], scores[plain])
            searched.append(
                {"mse": mse, "min/max": plain, "gap": round(gap, 4), "se": round(se, 4)}
            )
    print(
        "\nirgraph minus peer (bits/byte, ± standard error over the windows; < 0: irgraph better)"
    )
    for c in comparisons:
        print(f"  {c['irgraph']} - {c['peer']}: {c['gap']:+.4f} ± {c['se']:.4f}")
    if searched:
        print("irgraph GPTQ, searched minus min/max scales (< 0: the search better)")
    for c in searched:
        print(f"  {c['mse']} - {c['min/max']}: {c['gap']:+.4f} ± {c['se']:.4f}")
    for note in MATCHED_NOTES:
        print(f"note: {note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    saved = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
        "irgraph_minus_peer": comparisons,
        "mse_minus_min_max": searched,
        "notes": MATCHED_NOTES,
    }
    args.out.write_text(json.dumps(saved, indent=2))


if __name__ == "__main__":
    sys.exit(main())
