"""Reading a Hugging Face `config.json` strictly: every key is understood or rejected.

`HFConfig` hands out values and remembers which keys were read. A translator
reads what it maps, checks keys whose only harmless value is a default
(`c.only(...)`), and finally calls `c.finish()`: any key left that is neither
read nor on the allow-list of keys that cannot change the math (metadata,
training-only settings, generation defaults) is rejected by name. A config
that silently changed the model (a new flag in a later transformers release,
a quantization block) therefore fails loudly instead of importing wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from irgraph.errors import ConfigError
from irgraph.model_zoo.config import Activation

# Keys that never change the forward math: provenance, labels, training-only
# settings (dropout, init, auxiliary losses), runtime switches and generation defaults.
HARMLESS = frozenset(
    {
        "_name_or_path",
        "architectures",
        "auto_map",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "use_cache",
        "return_dict",
        "output_hidden_states",
        "output_attentions",
        "torchscript",
        "use_bfloat16",
        "id2label",
        "label2id",
        "num_labels",
        "problem_type",
        "finetuning_task",
        "tokenizer_class",
        "prefix",
        "task_specific_params",
        "sep_token_id",
        "_attn_implementation",
        "attn_implementation",
        "_attn_implementation_autoset",
        "use_flash_attn",
        "use_flash_attention_2",
        "gradient_checkpointing",
        "chunk_size_feed_forward",
        "is_decoder",
        "_commit_hash",
        "model_type",
        # training only
        "initializer_range",
        "initializer_factor",
        "init_std",
        "dropout",
        "dropout_rate",
        "attention_dropout",
        "hidden_dropout",
        "activation_dropout",
        "classifier_dropout",
        "attn_pdrop",
        "resid_pdrop",
        "embd_pdrop",
        "embed_dropout",
        "layerdrop",
        "router_aux_loss_coef",
        "output_router_logits",
        "router_jitter_noise",
        "aux_loss_alpha",
        "seq_aux",
        "router_z_loss_coef",
        "attention_probs_dropout_prob",
        "hidden_dropout_prob",
        # generation defaults kept in old config files
        "max_length",
        "min_length",
        "do_sample",
        "early_stopping",
        "num_beams",
        "num_beam_groups",
        "diversity_penalty",
        "temperature",
        "top_k",
        "top_p",
        "typical_p",
        "repetition_penalty",
        "length_penalty",
        "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size",
        "bad_words_ids",
        "num_return_sequences",
        "output_scores",
        "return_dict_in_generate",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "remove_invalid_values",
        "exponential_decay_length_penalty",
        "suppress_tokens",
        "begin_suppress_tokens",
        "max_new_tokens",
    }
)

# Keys every config may carry that are harmless only at their default value.
_DEFAULT_ONLY: dict[str, tuple[object, ...] | None] = {
    "add_cross_attention": (False,),
    "cross_attention_hidden_size": (None,),
    "tie_encoder_decoder": (False,),
    "pruned_heads": ({},),
    "quantization_config": (None,),
    "is_encoder_decoder": (False,),  # encoder-decoder translators read it themselves
    "pretraining_tp": None,  # any value: tensor-parallel slicing, same math (LLaMA, BLOOM)
}

# transformers' ACT2FN names -> irgraph activations (same function, checked against op references).
ACTIVATIONS = {
    "relu": Activation.RELU,
    "relu2": Activation.RELU2,
    "gelu": Activation.GELU,
    "gelu_python": Activation.GELU,
    "gelu_new": Activation.GELU_TANH,
    "gelu_fast": Activation.GELU_TANH,
    "gelu_pytorch_tanh": Activation.GELU_TANH,
    "gelu_tanh": Activation.GELU_TANH,
    "quick_gelu": Activation.FAST_GELU,
    "silu": Activation.SILU,
    "swish": Activation.SILU,
    "sigmoid": Activation.SIGMOID,
}

_MISSING = object()

TokenId = int | list[int]  # a special token id as config.json states it (LLaMA-3 lists its eos ids)


class HFConfig:
    """A config.json dict whose reads are tracked; `where` names the file in every error."""

    def __init__(self, data: dict[str, Any], where: str):
        if not isinstance(data, dict):
            raise ConfigError(
                "config.json must hold a JSON object", got=type(data).__name__, where=where
            )
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value of `key` (None counts as absent); required when no default is given."""
        self.used.add(key)
        value = self.data.get(key)
        if value is None:
            if default is _MISSING:
                raise ConfigError(f"required key {key!r} is missing", where=self.where)
            return default
        return value

    def raw(self, key: str, absent: Any = None) -> Any:
        """The value as written, an explicit null included; `absent` when the key is missing."""
        self.used.add(key)
        return self.data.get(key, absent)

    def first(self, keys: Iterable[str], default: Any = _MISSING) -> Any:
        """The first present key of several spellings (`n_embd` / `hidden_size`)."""
        keys = tuple(keys)
        self.used.update(keys)
        for key in keys:
            if self.data.get(key) is not None:
                return self.data[key]
        if default is _MISSING:
            raise ConfigError(
                f"required key {' or '.join(map(repr, keys))} is missing", where=self.where
            )
        return default

    def int(self, key: str, default: Any = _MISSING, minimum: int = 0) -> int:
        """An integer >= minimum: every integer a config states is a size, count or index."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"key {key!r} must be an integer", got=repr(value), where=self.where)
        if value < minimum:
            raise ConfigError(
                f"key {key!r} must be at least {minimum}", got=repr(value), where=self.where
            )
        return value

    def float(self, key: str, default: Any = _MISSING) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"key {key!r} must be a number", got=repr(value), where=self.where)
        if not math.isfinite(value):  # Python's json reads NaN and Infinity
            raise ConfigError(
                f"key {key!r} must be a finite number", got=repr(value), where=self.where
            )
        return float(value)

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(
                f"key {key!r} must be true or false", got=repr(value), where=self.where
            )
        return value

    def only(self, key: str, allowed: tuple[Any, ...], why: str = "") -> Any:
        """Accept `key` only at values whose math irgraph implements; absent means allowed[0]."""
        self.used.add(key)
        value = self.data.get(key, allowed[0])
        if value not in allowed:
            raise ConfigError(
                f"unsupported value for {key!r}" + (f": {why}" if why else ""),
                expected=" | ".join(map(repr, allowed)),
                got=repr(value),
                where=self.where,
            )
        return value

    def activation(
        self, key: str, default: Any = _MISSING, names: Iterable[str] = ()
    ) -> Activation:
        name = self.first((key, *names), default)
        if name not in ACTIVATIONS:
            raise ConfigError(
                f"unsupported activation in {key!r}",
                expected=" | ".join(sorted(ACTIVATIONS)),
                got=repr(name),
                where=self.where,
            )
        return ACTIVATIONS[name]

    def token_id(self, key: str) -> TokenId | None:
        self.used.add(key)
        value = self.data.get(key)
        ok = (
            value is None
            or (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, list) and all(isinstance(v, int) for v in value))
        )
        if not ok:
            raise ConfigError(
                f"key {key!r} must be a token id (or list of ids)",
                got=repr(value),
                where=self.where,
            )
        return value

    def fail(self, message: str, key: str, expected: Any = None) -> ConfigError:
        return ConfigError(
            message, expected=expected, got=f"{key}={self.data.get(key)!r}", where=self.where
        )

    def finish(self, harmless: Iterable[str] = ()) -> None:
        """Reject every key that was neither read nor known to be harmless, naming them all."""
        for key, allowed in _DEFAULT_ONLY.items():
            if key in self.data and key not in self.used and allowed is not None:
                self.only(key, allowed)
            self.used.add(key)
        allowed_keys = HARMLESS | set(harmless) | self.used
        unknown = sorted(k for k in self.data if k not in allowed_keys)
        if unknown:
            raise ConfigError(
                f"config key(s) {', '.join(unknown)} are not understood by the "
                f"{self.data.get('model_type')} importer and may change the model's math; refusing "
                "to guess",
                where=self.where,
            )
