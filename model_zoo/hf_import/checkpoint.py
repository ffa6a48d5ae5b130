"""A Hugging Face checkpoint folder: config.json, safetensors shards, tokenizer.

Shards are listed by `model.safetensors.index.json` when present, else every
`*.safetensors` file in the folder; all are memory-mapped through
`irgraph.weights.WeightStore`. Pickled checkpoints (`*.bin`, `*.pt`) are
refused: loading them would execute code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irgraph.errors import ConfigError
from irgraph.weights import WeightStore

INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Checkpoint:
    folder: Path
    config: dict[str, Any]
    tensors: WeightStore
    generation: dict[str, Any]  # generation_config.json ({} if absent)
    tokenizer: Path | None  # tokenizer.json beside the weights

    @property
    def config_path(self) -> str:
        return str(self.folder / "config.json")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {e}", where=str(path)) from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"not valid JSON: {e}", where=str(path)) from None


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files holding the weights (from the index when there is one)."""
    index = folder / INDEX_FILE
    if index.is_file():
        data = _read_json(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConfigError("index has no weight_map", where=str(index))
        files = [folder / f for f in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ConfigError(
                f"shard(s) listed in the index are missing: {', '.join(missing)}", where=str(index)
            )
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = sorted(
            p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")
        )
        hint = (
            f" (found {', '.join(pickled)}: pickled checkpoints are refused; convert to "
            "safetensors)"
            if pickled
            else ""
        )
        raise ConfigError(f"no *.safetensors weights{hint}", where=str(folder))
    return files


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read config.json and memory-map the weights of the checkpoint folder `path`."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError("not a folder", where=str(folder))
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConfigError("no config.json: not a Hugging Face checkpoint folder", where=str(folder))
    config = _read_json(config_file)
    files = shard_files(folder)
    tensors = WeightStore.open(*files)
    index = folder / INDEX_FILE
    if index.is_file():  # every tensor the index promises must be in the shards
        absent = sorted(set(_read_json(index)["weight_map"]) - set(tensors))
        if absent:
            raise ConfigError(
                f"{len(absent)} tensor(s) in the index are in no shard: {', '.join(absent[:5])}",
                where=str(index),
            )
    gen_file = folder / "generation_config.json"
    generation = _read_json(gen_file) if gen_file.is_file() else {}
    if not isinstance(generation, dict):
        raise ConfigError(
            "must hold a JSON object", got=type(generation).__name__, where=str(gen_file)
        )
    tokenizer = folder / TOKENIZER_FILE
    return Checkpoint(
        folder,
        config,
        tensors,
        generation,
        tokenizer if tokenizer.is_file() else None,
    )
