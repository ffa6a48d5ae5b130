"""config.json -> Plan, one small module per Hugging Face `model_type` family.

Each module exposes `MODEL_TYPES` and `translate(c: HFConfig) -> Plan`; it
reads the keys it maps, pins keys that are harmless only at one value
(`c.only`) and ends with `c.finish(...)`, so unknown keys are rejected by name.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from irgraph.errors import ConfigError
from irgraph.model_zoo.hf_import.keys import HFConfig
from irgraph.model_zoo.hf_import.plan import Plan
from irgraph.model_zoo.hf_import.translators import (
    bloom,
    codegen,
    deepseek_v2,
    falcon,
    gpt_bigcode,
    gpt_neox,
    gptj,
    llama,
    nemotron,
    opt,
    t5,
)

_MODULES: tuple[ModuleType, ...] = (
    llama,
    gpt_neox,
    gptj,
    codegen,
    bloom,
    opt,
    falcon,
    gpt_bigcode,
    t5,
    deepseek_v2,
    nemotron,
)
TRANSLATORS: dict[str, ModuleType] = {t: m for m in _MODULES for t in m.MODEL_TYPES}
SUPPORTED = tuple(sorted(TRANSLATORS))


def translate(raw: dict[str, Any], where: str) -> Plan:
    """The Plan for a parsed config.json (`where` names the file in errors)."""
    c = HFConfig(raw, where)
    model_type = c.get("model_type")
    if model_type not in TRANSLATORS:
        raise ConfigError(
            "unsupported model_type",
            expected=", ".join(SUPPORTED),
            got=repr(model_type),
            where=where,
        )
    try:
        return TRANSLATORS[model_type].translate(c)
    except ConfigError as e:  # the ModelConfig check names a field: say which file set it
        if e.where.startswith(where):
            raise
        raise ConfigError(
            e.message, expected=e.expected, got=e.got, where=f"{where}: {e.where}".rstrip(": ")
        ) from None
    except (ArithmeticError, TypeError) as e:
        # Keys read through HFConfig.int/float are checked; this catches the combinations
        # (a size of zero that divides another, a string where a number belongs in a key
        # read by `first`) before they surface as a traceback.
        raise ConfigError(
            f"values do not fit together ({type(e).__name__}: {e})", where=where
        ) from None


__all__ = ["SUPPORTED", "TRANSLATORS", "translate"]
