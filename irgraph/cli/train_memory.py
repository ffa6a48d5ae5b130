"""`irgraph train ZOO_NAME --size published`: seeded weights when training fits in memory.

A published-size zoo model is built as structure only (its weights would take
gigabytes); training one needs real weights. Before allocating anything, the
memory a run needs is estimated and compared with the memory available:

    weights   params x 4 B     (f32: the seeded arrays, then the torch module's copy
                                 of them, counted twice)
    gradients params x 4 B
    AdamW     params x 8 B     (two f32 moments)
    activations  micro-batch x seq x (layers x hidden x 16 + vocab x 2) x 4 B

(the activation term is the usual transformer rule of thumb: about sixteen f32
values of width `hidden` per token and layer kept for the backward pass, and the
logits with their gradient). When it fits, the model is built with seeded random
weights (`--seed`, the same initialisation as the tiny twin's); when it does not,
the run is refused with both numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from irgraph.errors import ConfigError
from irgraph.model_zoo import ModelConfig

BYTES_PER_PARAM = 4 + 4 + 4 + 8  # seeded array, torch weight, gradient, AdamW moments
FROZEN_BYTES_PER_PARAM = 4 + 4  # --lora: the base weights train no moments, keep no gradient
ACTIVATIONS_PER_LAYER = 16  # f32 values of width `hidden` kept per token and layer


@dataclass(frozen=True)
class TrainingMemory:
    params: int
    weights_and_optimizer: int  # bytes
    activations: int  # bytes
    per_param: int  # bytes per parameter in `weights_and_optimizer`

    @property
    def total(self) -> int:
        return self.weights_and_optimizer + self.activations


def estimate(
    config: ModelConfig, params: int, micro_batch: int, seq_len: int, *, lora: bool = False
) -> TrainingMemory:
    """Bytes a full-precision AdamW training run of `config` needs (module docstring)."""
    layers = config.layers + config.encoder_layers
    per_token = layers * config.hidden * ACTIVATIONS_PER_LAYER + config.vocab_size * 2
    per_param = FROZEN_BYTES_PER_PARAM if lora else BYTES_PER_PARAM
    return TrainingMemory(
        params, params * per_param, micro_batch * seq_len * per_token * 4, per_param
    )


def available_memory() -> int:
    """Bytes the kernel says a new process can use (MemAvailable), else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(name: str, need: TrainingMemory, available: int) -> None:
    """Refuse a run that needs more memory than is available, with the estimate."""
    if need.total <= available:
        return
    smaller = (
        "the tiny twin (--size tiny)"
        if need.weights_and_optimizer > available
        else "a smaller --batch-size or --seq-len (or more --grad-accum)"
    )
    raise ConfigError(
        f"training {name} at published size needs about {gib(need.total)} of memory "
        f"({need.params / 1e9:.2f}B parameters x {need.per_param} B for weights, gradients "
        f"and optimizer = {gib(need.weights_and_optimizer)}, plus {gib(need.activations)} of "
        f"activations), and {gib(available)} is available; train {smaller}",
        expected=f"<= {gib(available)}",
        got=gib(need.total),
    )


def gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
