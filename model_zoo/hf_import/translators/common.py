"""Pieces every translator shares: special token ids and the final Plan."""

from __future__ import annotations

from typing import Any

from irgraph.model_zoo.config import ModelConfig
from irgraph.model_zoo.hf_import.keys import HFConfig, TokenId
from irgraph.model_zoo.hf_import.plan import Plan

TOKEN_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def token_ids(c: HFConfig, defaults: dict[str, TokenId | None] | None = None) -> dict[str, Any]:
    """Special token ids as stated (None where absent; a list stays a list, e.g. LLaMA-3's eos)."""
    ids: dict[str, Any] = {}
    for key in TOKEN_KEYS:
        value = c.token_id(key)
        ids[key] = (defaults or {}).get(key) if value is None else value
    return ids


def plan(
    c: HFConfig,
    config: ModelConfig,
    ids: dict[str, Any],
    harmless: tuple[str, ...] = (),
    **layout: Any,
) -> Plan:
    """Finish reading `c` (unknown keys fail here), copy token ids to the config, make the Plan."""
    c.finish(harmless)
    first = {k: (v[0] if isinstance(v, list) and v else v) for k, v in ids.items()}
    config = config.replace(**{k: v for k, v in first.items() if isinstance(v, int)}).validate()
    return Plan(config=config, meta=dict(ids), **layout)
