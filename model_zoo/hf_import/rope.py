"""Rotary settings from a config.json, in both the transformers 4.x and 5.x spellings.

4.x: `rope_theta` and `partial_rotary_factor` at the top level, scaling in
`rope_scaling` (`{"type" | "rope_type": ..., "factor": ...}`); GPT-NeoX wrote
`rotary_pct` / `rotary_emb_base`. 5.x: one `rope_parameters` dict holding
`rope_type`, `rope_theta`, `partial_rotary_factor` and the scaling keys.
Values inside the dict win over top-level ones, as in transformers'
`standardize_rope_params`. Every key of the dict must be understood.
"""

from __future__ import annotations

import math
from typing import Any

from irgraph.errors import ConfigError
from irgraph.model_zoo.config import RopeScaling, RotaryConfig
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.ops.rotary import rotary_attention_factor

_TYPES = {
    "default": RopeScaling.NONE,
    "linear": RopeScaling.LINEAR,
    "dynamic": RopeScaling.DYNAMIC_NTK,
    "llama3": RopeScaling.LLAMA3,
    "yarn": RopeScaling.YARN,
}
_DICT_KEYS = {
    "rope_type",
    "type",
    "rope_theta",
    "partial_rotary_factor",
    "factor",
    "original_max_position_embeddings",
    "low_freq_factor",
    "high_freq_factor",
    "beta_fast",
    "beta_slow",
    "mscale",
    "mscale_all_dim",
    "attention_factor",
    "truncate",
}


def rope_dict(c: HFConfig) -> dict[str, Any]:
    """The merged rope settings (5.x dict, else 4.x rope_scaling plus top-level keys)."""
    params = c.get("rope_parameters", None)
    scaling = c.get("rope_scaling", None)
    if params is not None and not isinstance(params, dict):
        raise ConfigError("rope_parameters must be an object", got=repr(params), where=c.where)
    if scaling is not None and not isinstance(scaling, dict):
        raise ConfigError("rope_scaling must be an object", got=repr(scaling), where=c.where)
    merged = dict(scaling or {})
    merged.update(params or {})
    unknown = sorted(set(merged) - _DICT_KEYS)
    if unknown:
        raise ConfigError(
            f"rope key(s) {', '.join(unknown)} are not understood",
            expected=", ".join(sorted(_DICT_KEYS)),
            where=f"{c.where}: {'rope_parameters' if params is not None else 'rope_scaling'}",
        )
    for key, aliases in (
        ("rope_theta", ("rope_theta", "rotary_emb_base")),
        ("partial_rotary_factor", ("partial_rotary_factor", "rotary_pct")),
    ):
        top = c.first(aliases, None)
        if key not in merged and top is not None:
            merged[key] = top
    return merged


def rotary_from_hf(
    c: HFConfig,
    *,
    head_dim: int,
    max_position: int,
    interleaved: bool = False,
    rotary_dim: int | None = None,
    default_theta: float = 10000.0,
    default_fraction: float = 1.0,
) -> RotaryConfig:
    """RotaryConfig for a model whose heads are `head_dim` wide (`rotary_dim` sets the fraction)."""
    rope = rope_dict(c)
    where = f"{c.where}: rope_parameters"
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in _TYPES:
        raise ConfigError(
            "unsupported rope type", expected=" | ".join(_TYPES), got=repr(kind), where=where
        )
    scaling = _TYPES[kind]
    fraction = float(rope.get("partial_rotary_factor") or default_fraction)
    if rotary_dim is not None:
        fraction = rotary_dim / head_dim
    if int(head_dim * fraction) % 2:
        raise ConfigError("rotary dims must be even", got=f"{head_dim} x {fraction}", where=where)
    if rope.get("truncate", True) is not True:
        raise ConfigError(
            "YaRN without truncated correction range is not implemented",
            got="truncate=false",
            where=where,
        )
    base = float(rope.get("rope_theta") or default_theta)
    kw: dict[str, Any] = {
        "fraction": fraction,
        "interleaved": interleaved,
        "base": base,
        "scaling": scaling,
    }
    if scaling is RopeScaling.NONE:
        return RotaryConfig(**kw)
    factor = rope.get("factor")
    original = int(rope.get("original_max_position_embeddings") or max_position)
    if factor is None:
        if scaling is not RopeScaling.YARN:
            raise ConfigError(f"rope type {kind!r} needs a factor", where=where)
        factor = max_position / original  # transformers' YaRN default (DeepSeek-V3 style configs)
    kw.update(factor=float(factor), original_max_position=original)
    if scaling is RopeScaling.DYNAMIC_NTK:
        # transformers rescales against max_position_embeddings, not an "original" length.
        kw["original_max_position"] = max_position
    elif scaling is RopeScaling.LLAMA3:
        kw.update(
            low_freq_factor=float(rope.get("low_freq_factor", 1.0)),
            high_freq_factor=float(rope.get("high_freq_factor", 4.0)),
        )
    elif scaling is RopeScaling.YARN:
        kw.update(
            beta_fast=float(rope.get("beta_fast") or 32.0),
            beta_slow=float(rope.get("beta_slow") or 1.0),
            mscale=float(rope.get("mscale") or 0.0),
            mscale_all_dim=float(rope.get("mscale_all_dim") or 0.0),
        )
        given = rope.get("attention_factor")
        derived = rotary_attention_factor(
            "yarn", kw["factor"], kw["mscale"], kw["mscale_all_dim"], None
        )
        if given is not None and not math.isclose(float(given), derived, rel_tol=1e-9):
            raise ConfigError(
                "an explicit YaRN attention_factor other than the derived one is not supported",
                expected=derived,
                got=given,
                where=where,
            )
    return RotaryConfig(**kw)
