"""Training a Graph through its torch module: the usual recipe, resumable, single or multi-process.

AdamW (weight decay on matrices and embeddings only), linear warmup then
cosine decay to `min_lr_ratio`·lr, gradient clipping, dropout on the residual
branches, bf16 autocast, gradient accumulation, a seed that fixes every batch
and dropout mask, held-out loss (perplexity, bits per byte), checkpoints in
`DIR/checkpoints/` that resume to the same weights as an uninterrupted run,
optional LoRA. A graph with pruned weights (irgraph/sparsity.py's record) trains with masked
gradients and stays exactly as sparse; LoRA merges as W + M⊙(α/r·BA), which is not the
adapter as trained: the run scores the merged graph on the held-out windows too
(`TrainResult.merged_eval`, beside `evals[-1]`; `train.json`'s masked_merge_eval). Under `torchrun`
each process takes its share of every global batch and
`torch.nn.parallel.DistributedDataParallel` averages the gradients (gloo on CPU, nccl on GPUs).

The library reports through callbacks (`on_step`, `on_eval`); printing and
progress bars belong to the CLI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from irgraph import sparsity
from irgraph.codegen.torch import checkpoint, lora
from irgraph.codegen.torch.attention import unpadded_self_attention
from irgraph.codegen.torch.data import batch_windows, eval_windows
from irgraph.codegen.torch.module import GraphModule, to_torch, torch_feeds, with_weights
from irgraph.codegen.torch.objective import lm_batch, lm_loss
from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.lm import graph_inputs
from irgraph.output import check_location
from irgraph.passes.merge_lora import merge_lora
from irgraph.serialize import save
from irgraph.text import Corpus

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TrainConfig:
    """The recipe. `batch_size` is the global batch in sequences per optimizer step."""

    steps: int = 100
    batch_size: int = 8
    seq_len: int = 128
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 10
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    dropout: float = 0.0
    bf16: bool = False
    grad_accum: int = 1
    seed: int = 0
    heldout_fraction: float = 0.05
    eval_every: int = 0  # 0: evaluate at the start and the end only
    eval_tokens: int = 32768
    checkpoint_every: int = 0  # 0: only the final checkpoint
    lora_rank: int = 0  # 0: train every weight
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ()  # globs over linear weight names; empty: all but the LM head
    compile: bool = (
        False  # torch.compile the training forward (fuses the elementwise ops: ~2x on CPU)
    )

    def validate(self) -> TrainConfig:
        def need(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ConfigError(message, got=getattr(self, key), where=f"train config: {key}")

        for key in ("steps", "batch_size", "seq_len", "grad_accum"):
            need(getattr(self, key) >= 1, key, "must be at least 1")
        need(0 < self.lr < math.inf, "lr", "must be positive")
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "must be in 0..1")
        need(self.warmup >= 0, "warmup", "must be >= 0")
        need(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        need(0 <= self.grad_clip < math.inf, "grad_clip", "must be >= 0 (0 = off)")
        need(0 <= self.weight_decay < math.inf, "weight_decay", "must be >= 0")
        need(0 < self.lora_alpha < math.inf, "lora_alpha", "must be positive")
        need(self.seed >= 0, "seed", "must be >= 0")
        need(self.eval_tokens >= 1, "eval_tokens", "must be at least 1")
        for key in ("eval_every", "checkpoint_every"):
            need(getattr(self, key) >= 0, key, "must be >= 0 (0 = off)")
        need(0 < self.heldout_fraction < 1, "heldout_fraction", "must be in (0, 1)")
        need(self.lora_rank >= 0, "lora_rank", "must be >= 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)}",
                expected=", ".join(sorted(fields)),
                where="train config",
            )
        data = {k: tuple(v) if k == "lora_targets" else v for k, v in data.items()}
        return TrainConfig(**data).validate()

    def recipe_hash(self) -> str:
        """Hash of what determines the trained weights (not how often to evaluate or checkpoint)."""
        recipe = {
            k: v
            for k, v in self.to_dict().items()
            if k not in ("eval_every", "checkpoint_every", "eval_tokens")
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def lr_at(config: TrainConfig, step: int) -> float:
    """Linear warmup over `warmup` steps, then cosine decay.

    The cosine goes from lr down to min_lr_ratio·lr at the last step.
    """
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    span = max(config.steps - config.warmup - 1, 1)
    progress = min((step - config.warmup) / span, 1.0)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def bf16_supported() -> bool:
    """bf16 autocast pays off where the CPU has native bf16 dot products (or on a GPU)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class StepInfo:
    step: int  # steps done (1..steps)
    steps: int
    loss: float
    lr: float
    tokens: int  # global tokens trained so far in this run
    tokens_per_s: float


@dataclass
class EvalInfo:
    step: int
    loss: float  # nats per token
    perplexity: float
    bits_per_byte: float


@dataclass
class TrainResult:
    graph: Graph  # the trained graph (LoRA merged)
    history: list[StepInfo] = field(default_factory=list)
    evals: list[EvalInfo] = field(default_factory=list)
    resumed_from: int = 0
    seconds: float = 0.0
    # LoRA on a pruned graph: the held-out score of the saved graph, W + M⊙(α/r·BA), which is
    # not the adapter as trained (that is evals[-1]): the mask drops the update's pruned entries
    merged_eval: EvalInfo | None = None


@dataclass
class _World:
    rank: int
    size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def _world() -> _World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
    if size > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    return _World(dist.get_rank() if size > 1 else 0, size, device)


def _optimizer(
    module: torch.nn.Module, config: TrainConfig
) -> tuple[torch.optim.AdamW, dict[int, str]]:
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.dim() >= 2]  # matrices and embeddings; not norms, biases
    rest = [p for n, p in named if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(config.beta1, config.beta2),
    )
    return opt, {id(p): n for n, p in named}


def _sparsity_masks(
    module: GraphModule, graph: Graph, device: Any
) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """(parameter, kept entries) of every trained weight the graph records as pruned
    (irgraph/sparsity.py): fine-tuning keeps its pattern."""
    masks = []
    for name in sparsity.records(graph):
        p = module.weight(name)
        if isinstance(p, torch.nn.Parameter) and p.requires_grad:
            keep = torch.from_numpy(sparsity.mask(np.asarray(graph.weight(name))))
            masks.append((p, keep.to(device=device, dtype=p.dtype)))
    return masks


def model_hash(graph: Graph) -> str:
    """Hash of the graph's text form: what a run's checkpoints were trained from."""
    return hashlib.sha256(str(graph).encode()).hexdigest()[:16]


def foreign_run(
    out_dir: str | os.PathLike[str], graph: Graph, config: TrainConfig, source: str = ""
) -> str | None:
    """Why the checkpoints in `out_dir` are not this run's (None: none there, or this run's).

    This run is the same source, model (its text form) and recipe; only such
    checkpoints are resumed. Checkpoints from before the model was recorded are
    judged by the recipe alone (loading them checks the tensor shapes).
    """
    found = checkpoint.latest(Path(out_dir) / CHECKPOINTS)
    if found is None:
        return None
    try:
        state = json.loads((found / "state.json").read_text())
    except (OSError, ValueError, RecursionError) as e:  # bad JSON or UTF-8, or nested too deep
        return f"its checkpoint {found.name}/state.json is unreadable ({e})"
    if not isinstance(state, dict):
        return f"its checkpoint {found.name}/state.json is not a JSON object"
    theirs = state.get("source", source)
    if theirs != source or state.get("model_hash", model_hash(graph)) != model_hash(graph):
        return f"it holds the checkpoints of another model (trained from {theirs!r})"
    if state.get("recipe_hash") != config.recipe_hash():
        stored = state.get("recipe")
        recipe: dict[str, Any] = stored if isinstance(stored, dict) else {}
        ours = config.to_dict()
        keys = sorted(k for k in ours if recipe.get(k) != ours[k])
        what = ", ".join(f"{k} {recipe.get(k)!r} here, {ours[k]!r} now" for k in keys[:4])
        return f"its checkpoints were trained with a different recipe ({what or 'unknown'})"
    return None


class Trainer:
    """One training run of `graph` on `corpus` into `out_dir` (see module docstring).

    `source` (what the graph was loaded from) is recorded in every checkpoint with
    the model's hash, so that only this run's checkpoints are resumed.
    """

    def __init__(
        self,
        graph: Graph,
        corpus: Corpus,
        config: TrainConfig,
        out_dir: str | os.PathLike[str],
        source: str = "",
    ):
        self.graph, self.corpus, self.config = graph, corpus, config.validate()
        self.out = Path(out_dir)
        self.source, self.model_hash = source, model_hash(graph)
        self.world = _world()
        per_step = self.world.size * config.grad_accum
        if config.batch_size % per_step:
            raise ConfigError(
                "batch size must split evenly over processes × accumulation steps",
                expected=f"a multiple of {per_step}",
                got=config.batch_size,
                where="--batch-size",
            )
        if config.bf16 and not bf16_supported():
            raise ConfigError(
                "bf16 autocast needs a CPU with avx512_bf16/amx or a GPU", where="--bf16"
            )
        self.inputs = graph_inputs(graph)
        torch.manual_seed(config.seed)
        self.module: GraphModule = to_torch(graph, dropout=config.dropout).to(self.world.device)
        self.adapters = (
            lora.attach(
                self.module,
                graph,
                config.lora_rank,
                config.lora_alpha,
                config.lora_targets,
                config.seed,
            ).to(self.world.device)
            if config.lora_rank
            else None
        )
        self.optimizer, self.names = _optimizer(self.module, config)
        self.masks = _sparsity_masks(self.module, graph, self.world.device)
        self.ddp = (
            torch.nn.parallel.DistributedDataParallel(self.module) if self.world.size > 1 else None
        )
        self.model: torch.nn.Module = self.ddp if self.ddp is not None else self.module
        if config.compile:  # evaluation stays eager: its batch shapes vary, each would recompile
            # torch.compile of a Module returns an OptimizedModule (a Module); its stub: Callable
            self.model = torch.compile(self.model)  # type: ignore[assignment]
        self.heldout = eval_windows(corpus.heldout, config.seq_len, config.eval_tokens)

    def _autocast(self) -> AbstractContextManager[Any]:
        if not self.config.bf16:
            return nullcontext()
        return torch.autocast(self.world.device.type, dtype=torch.bfloat16)

    def _batch_context(self) -> ExitStack:
        """Autocast, and the promise that training batches carry no padding.

        lm_batch makes none.
        """
        stack = ExitStack()
        stack.enter_context(self._autocast())
        stack.enter_context(unpadded_self_attention())
        return stack

    def _tensors(
        self, windows: np.ndarray
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        feeds, targets, weights = lm_batch(self.inputs, windows, self.graph.meta)
        dev = self.world.device
        return (
            torch_feeds(feeds, dev),
            torch.from_numpy(targets).to(dev),
            torch.from_numpy(weights).to(dev),
        )

    def evaluate(self, step: int, module: GraphModule | None = None) -> EvalInfo:
        """Held-out loss over the fixed evaluation windows (shared out over processes), of the
        module being trained or of `module`."""
        model = self.module if module is None else module
        model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.world.device)
        with torch.no_grad(), self._batch_context():
            for windows in np.array_split(
                self.heldout[self.world.rank :: self.world.size], max(1, len(self.heldout) // 16)
            ):
                if len(windows) == 0:
                    continue
                feeds, targets, weights = self._tensors(windows)
                loss = lm_loss(model(**feeds)["logits"], targets, weights)
                n = weights.sum()
                total += torch.stack([loss.double() * n, n.double()])
        if self.world.size > 1:
            dist.all_reduce(total)
        self.module.train()
        mean_loss = float(total[0] / total[1])
        bpb = mean_loss / math.log(2) / self.corpus.bytes_per_token
        return EvalInfo(step, mean_loss, math.exp(min(mean_loss, 700.0)), bpb)

    def _state(self, step: int, evals: list[EvalInfo]) -> dict[str, Any]:
        return {
            "recipe": self.config.to_dict(),
            "recipe_hash": self.config.recipe_hash(),
            "source": self.source,
            "model_hash": self.model_hash,
            "evals": [dataclasses.asdict(e) for e in evals],
            "world_size": self.world.size,
        }

    def _check_out(self) -> None:
        check_location(self.out)
        if not self.out.is_dir() or not any(self.out.iterdir()):
            return
        why = foreign_run(self.out, self.graph, self.config, self.source)
        if why is None and checkpoint.latest(self.out / CHECKPOINTS) is None:
            why = "it is not empty and holds no training run"
        if why is not None:
            raise ConfigError(
                f"the output folder is not this run's: {why}; use a new folder",
                where=str(self.out),
            )

    def _resume(self) -> tuple[int, list[EvalInfo]]:
        found = checkpoint.latest(self.out / CHECKPOINTS)
        if found is None:
            return 0, []
        state = checkpoint.load(found, self.module, self.optimizer, self.names)
        return int(state["step"]), [EvalInfo(**e) for e in state.get("evals", [])]

    def run(
        self,
        *,
        resume: bool = True,
        on_step: Callable[[StepInfo], None] | None = None,
        on_eval: Callable[[EvalInfo], None] | None = None,
    ) -> TrainResult:
        """Train to `config.steps`, resuming this run's checkpoints in `out_dir` if `resume`.

        `out_dir` must be new, empty or hold this run's checkpoints (checked before the
        first step); replacing anything else is the caller's decision (`irgraph train
        --force` moves it aside first).
        """
        cfg, world = self.config, self.world
        self._check_out()
        start, evals = self._resume() if resume else (0, [])
        if start == 0:
            evals.append(self.evaluate(0))
            if on_eval:
                on_eval(evals[-1])
        result = TrainResult(self.graph, resumed_from=start)
        micro = cfg.batch_size // (world.size * cfg.grad_accum)
        t0, tokens = time.perf_counter(), 0
        self.module.train()
        for step in range(start, cfg.steps):
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(cfg, step)
            windows = batch_windows(self.corpus.train, step, cfg.batch_size, cfg.seq_len, cfg.seed)
            loss_sum = 0.0
            for m in range(cfg.grad_accum):
                first = (m * world.size + world.rank) * micro
                torch.manual_seed(
                    hash((cfg.seed, step, m, world.rank)) % 2**63
                )  # dropout masks by (step, micro, rank)
                feeds, targets, weights = self._tensors(windows[first : first + micro])
                sync = m == cfg.grad_accum - 1 or world.size == 1
                with (
                    nullcontext() if sync or self.ddp is None else self.ddp.no_sync(),
                    self._batch_context(),
                ):
                    loss = lm_loss(self.model(**feeds)["logits"], targets, weights) / cfg.grad_accum
                loss.backward()
                loss_sum += float(loss.detach())
            for p, keep in self.masks:  # pruned entries get no gradient (nor Adam moments)
                if p.grad is not None:
                    p.grad.mul_(keep)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(
                    [p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip
                )
            self.optimizer.step()
            with torch.no_grad():  # and stay exactly zero (weight decay, float residue)
                for p, keep in self.masks:
                    p.mul_(keep)
            self.optimizer.zero_grad(set_to_none=True)
            if world.size > 1:
                reduced = torch.tensor([loss_sum], device=world.device)
                dist.all_reduce(reduced)
                loss_sum = float(reduced) / world.size
            tokens += cfg.batch_size * cfg.seq_len
            info = StepInfo(
                step + 1,
                cfg.steps,
                loss_sum,
                lr_at(cfg, step),
                tokens,
                tokens / max(time.perf_counter() - t0, 1e-9),
            )
            result.history.append(info)
            if on_step:
                on_step(info)
            last = step + 1 == cfg.steps
            if last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0):
                evals.append(self.evaluate(step + 1))
                if on_eval:
                    on_eval(evals[-1])
            if world.main and (
                last or (cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0)
            ):
                checkpoint.save(
                    self.out / CHECKPOINTS,
                    step + 1,
                    self.module,
                    self.optimizer,
                    self.names,
                    self._state(step + 1, evals),
                )
        result.evals, result.seconds = evals, time.perf_counter() - t0
        result.graph = self.trained_graph()
        if self.adapters is not None and sparsity.records(self.graph):
            merged = to_torch(result.graph).to(world.device)
            result.merged_eval = self.evaluate(cfg.steps, merged)
        return result

    def trained_graph(self) -> Graph:
        """The graph with the module's weights, LoRA adapters merged in."""
        trained = with_weights(self.graph, self.module)
        if self.adapters is None:
            return trained
        # W + M⊙(α/r·BA): the merged update keeps each pruned weight's pattern
        return sparsity.remasked(merge_lora(trained, self.adapters.weights()), self.graph)


def save_trained(
    out_dir: str | os.PathLike[str],
    result: TrainResult,
    config: TrainConfig,
    extra: dict[str, Any] | None = None,
    extra_files: dict[str, str | os.PathLike[str]] | None = None,
) -> Path:
    """Make `out_dir` a saved graph next to its checkpoints.

    The graph is graph.irg, weights.safetensors and train.json.

    Each file is written in a temporary folder and renamed into place, so the
    checkpoints stay and no file is ever half-written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staged = save(result.graph, out / ".staged-graph", extra_files=extra_files, overwrite=True)
    summary = {
        "recipe": config.to_dict(),
        "recipe_hash": config.recipe_hash(),
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 2),
        "evals": [dataclasses.asdict(e) for e in result.evals],
        **(
            {"masked_merge_eval": dataclasses.asdict(result.merged_eval)}
            if result.merged_eval is not None
            else {}
        ),
        **(extra or {}),
    }
    (staged / "train.json").write_text(json.dumps(summary, indent=2))
    for f in sorted(staged.iterdir()):
        os.replace(f, out / f.name)
    staged.rmdir()
    return out
