"""Why Wanda gains little over magnitude on the reference model: per weight, the input-norm spread
and each mask's layer-output error (issue 17).

    .venv/bin/python -m benchmarks.wanda_spread [--samples 64] [--seq 256] [--sparsity 0.5]

Wanda (Sun et al. 2023) scores |W_ij|·‖X_j‖₂, so it differs from magnitude only where the input
features' norms ‖X_j‖ differ. For every pruned weight of the reference model (calibrated like
benchmarks/pruning_quality.py, on the dense model's inputs) this prints the spread of ‖X_j‖
(max / median) and the relative layer-output error ‖(W - W_pruned)X‖² / ‖WX‖² of per-row
magnitude, per-layer magnitude and Wanda, then Wanda's error as a multiple of per-row
magnitude's. The error is read off H = 2XᵀX / rows: tr(D H Dᵀ) / tr(W H Wᵀ), D = W - W_pruned.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.quantization_quality import split_files
from irgraph.cli.calibration import Calibration
from irgraph.passes.calibrate import Calibrator, linear_inputs
from irgraph.passes.prune import Prune, masks, wanda_scores
from irgraph.serialize import load


def relative_error(w: np.ndarray, keep: np.ndarray, h: np.ndarray) -> float:
    """‖(W - W·keep)X‖² / ‖WX‖² from H ∝ XᵀX."""
    d = w * ~keep
    return float(np.einsum("ij,jk,ik->", d, h, d) / np.einsum("ij,jk,ik->", w, h, w))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=64, help="calibration windows")
    ap.add_argument("--seq", type=int, default=256, help="calibration window length")
    ap.add_argument("--sparsity", type=float, default=0.5)
    args = ap.parse_args()
    from benchmarks.reference_model import reference_model

    model = load(reference_model(log=lambda m: print(m, flush=True)))
    train_files, _ = split_files()
    texts = tuple(str(f) for f in train_files if f.stat().st_size)
    batches = Calibration(texts, args.samples, args.seq, seed=0).batches(None, 256)
    names = Prune()._select(model)  # the weights `prune` prunes
    uses = linear_inputs(model, names)
    xs = list(dict.fromkeys(x for n in names for x in uses[n]))
    hessians = Calibrator(model, batches).hessians(xs, {}, lambda *a: None, "wanda spread")
    s = args.sparsity
    methods = {
        "magnitude/row": lambda w, h: masks.row_mask(np.abs(w), s),
        "magnitude/layer": lambda w, h: masks.flat_mask(np.abs(w), s),
        "wanda": lambda w, h: masks.row_mask(wanda_scores(w, h), s),
    }
    print(f"\n| weight | ‖X_j‖ max/median | {' | '.join(methods)} | wanda / magnitude-row |")
    print("|---|---|---|---|---|---|")
    totals = dict.fromkeys(methods, 0.0)
    for name in names:
        w = np.asarray(model.weight(name), np.float64)
        h = np.asarray(sum(hessians[x] for x in uses[name]) / len(uses[name]))
        norms = np.sqrt(np.maximum(np.diag(h), 0.0))
        errs = {m: relative_error(w, mask(w, h), h) for m, mask in methods.items()}
        for m, e in errs.items():
            totals[m] += e / len(names)
        cells = " | ".join(f"{e:.4f}" for e in errs.values())
        ratio = errs["wanda"] / errs["magnitude/row"]
        print(f"| {name} | {norms.max() / np.median(norms):.1f} | {cells} | {ratio:.2f} |")
    cells = " | ".join(f"{e:.4f}" for e in totals.values())
    print(f"| mean | | {cells} | {totals['wanda'] / totals['magnitude/row']:.2f} |")


if __name__ == "__main__":
    main()
