"""Resumable training checkpoints without pickle: tensors in safetensors, scalars in JSON.

DIR/checkpoints/step-000120/
  model.safetensors      every module tensor (IR weights, LoRA adapters) under its state_dict name
  optimizer.safetensors  AdamW moments per parameter: <name>.exp_avg, <name>.exp_avg_sq, <name>.step
  state.json             {"step": 120, "recipe": {...}, "recipe_hash": "...", "source": "...",
                          "model_hash": "...", "evals": [...]}

Each checkpoint is written to a temporary folder and renamed into place; the
newest `keep` are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from irgraph.atomic import current_umask
from irgraph.errors import ConfigError

PREFIX = "step-"
_MOMENTS = ("exp_avg", "exp_avg_sq", "step")


def checkpoint_dirs(root: str | os.PathLike[str]) -> list[Path]:
    folder = Path(root)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").is_file()
    )


def latest(root: str | os.PathLike[str]) -> Path | None:
    found = checkpoint_dirs(root)
    return found[-1] if found else None


def save(
    root: str | os.PathLike[str],
    step: int,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    names: dict[int, str],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` under `root`; `names` maps id(parameter) -> its state_dict name."""
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt.", dir=folder))
    try:
        save_file(
            {k: v.detach().contiguous() for k, v in module.state_dict().items()},
            tmp / "model.safetensors",
        )
        moments = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                for key, value in optimizer.state.get(p, {}).items():
                    if key in _MOMENTS:
                        moments[f"{names[id(p)]}.{key}"] = (
                            torch.as_tensor(value).detach().clone().contiguous()
                        )
        save_file(moments, tmp / "optimizer.safetensors")
        (tmp / "state.json").write_text(
            json.dumps({"step": step, **state}, indent=2, sort_keys=True)
        )
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would make it private
        target = folder / f"{PREFIX}{step:07d}"
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoint_dirs(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load(
    path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer, names: dict[int, str]
) -> dict[str, Any]:
    """Restore module and optimizer from checkpoint folder `path`; returns its state.json."""
    try:
        state = json.loads((path / "state.json").read_text())
        tensors = load_file(path / "model.safetensors")
        moments = load_file(path / "optimizer.safetensors")
    except (OSError, ValueError, RecursionError) as e:  # bad JSON or UTF-8, or nested too deep
        raise ConfigError(f"unreadable checkpoint: {e}", where=str(path)) from None
    try:
        missing, unexpected = module.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # a tensor of another shape: another model's checkpoint
        first = str(e).strip().splitlines()[-1].strip()
        raise ConfigError(
            f"checkpoint does not fit the model: {first}", where=str(path / "model.safetensors")
        ) from None
    if missing or unexpected:
        raise ConfigError(
            "checkpoint does not fit the model",
            expected=missing[:5] or None,
            got=unexpected[:5] or None,
            where=str(path / "model.safetensors"),
        )
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            if f"{name}.step" in moments:
                optimizer.state[p] = {k: moments[f"{name}.{k}"].clone() for k in _MOMENTS}
    return state
