"""`irgraph train SOURCE --corpus PATH --steps N -o DIR`: train or fine-tune a graph via PyTorch.

SOURCE is what `irgraph compile` takes: a saved graph folder, a Hugging Face
checkpoint folder, or a zoo model name (with `--size`, default tiny; at published
size it gets seeded random weights when training fits in memory, and is refused
with the estimate when not: train_memory.py). Zoo models read bytes as tokens;
a folder with a `tokenizer.json` uses it (and DIR gets a copy). DIR ends as a
saved graph with the trained weights (ready for `irgraph run` / `compile`), its
`train.json` summary, resumable checkpoints in DIR/checkpoints/ and, when
matplotlib is installed (`irgraph[plot]`), the loss curve DIR/loss.png
(loss_plot.py). Rerunning the same SOURCE and recipe into DIR resumes; a DIR
holding anything else follows the output-folder rule (`irgraph/output.py`,
`--force`). Under `torchrun --nproc_per_node N` the run is
data-parallel (DDP); only rank 0 reports and writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from irgraph.analysis import cost
from irgraph.cli import progress, train_memory
from irgraph.cli.common import FiniteFloat
from irgraph.cli.compile_cmd import TOKENIZER, load_source, looks_like_a_path
from irgraph.cli.loss_plot import write_loss_curve
from irgraph.cli.output_rule import check_output_option, replaced_in_place
from irgraph.errors import ConfigError
from irgraph.ir import Graph
from irgraph.model_zoo import SIZES, Size
from irgraph.output import CHECKPOINT_STATE, check_location
from irgraph.types import eval_dim


def vocab_size(graph: Graph) -> int:
    logits = graph.outputs.get("logits")
    if logits is None:
        raise ConfigError(
            f"graph {graph.name!r} has no 'logits' output to train", expected="a language model"
        )
    return eval_dim(logits.type.shape[-1], {})


@click.command()
@click.argument("source")
@click.option(
    "--corpus",
    "corpus",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help="Text file or folder (all text files below it); repeatable.",
)
@click.option("--steps", type=click.IntRange(min=1), required=True, help="Optimizer steps.")
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder: the trained graph, train.json and checkpoints/. New or empty, or "
    "this run's own (same SOURCE and recipe: it resumes); anything else needs --force.",
)
@click.option(
    "--size",
    type=click.Choice(SIZES),
    default="tiny",
    show_default=True,
    help="Zoo models: tiny twin, or published size (seeded random weights; refused with the "
    "memory estimate when training would not fit).",
)
@click.option(
    "--tokenizer",
    type=click.Path(exists=True, dir_okay=False),
    help="tokenizer.json (default: SOURCE/tokenizer.json if present, else bytes).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Global batch in sequences.",
)
@click.option("--seq-len", type=click.IntRange(min=1), default=128, show_default=True)
@click.option(
    "--lr",
    type=FiniteFloat(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Peak learning rate.",
)
@click.option(
    "--min-lr-ratio",
    type=FiniteFloat(min=0, max=1),
    default=0.1,
    show_default=True,
    help="Cosine floor as a share of --lr.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Linear warmup steps.",
)
@click.option("--weight-decay", type=FiniteFloat(min=0), default=0.1, show_default=True)
@click.option(
    "--grad-clip",
    type=FiniteFloat(min=0),
    default=1.0,
    show_default=True,
    help="Max gradient norm (0 = off).",
)
@click.option(
    "--dropout",
    type=FiniteFloat(min=0, max=1, max_open=True),
    default=0.0,
    show_default=True,
    help="Embedding and residual dropout.",
)
@click.option(
    "--bf16/--no-bf16", default=None, help="bf16 autocast [default: on where the CPU supports it]."
)
@click.option(
    "--grad-accum",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Micro-batches per step.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--heldout-fraction",
    type=FiniteFloat(min=0, max=1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Share of files held out.",
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=0),
    default=0,
    help="Held-out evaluation every N steps (0: start and end).",
)
@click.option("--eval-tokens", type=click.IntRange(min=1), default=32768, show_default=True)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=0),
    default=0,
    help="Checkpoint every N steps (0: the end only).",
)
@click.option(
    "--lora",
    "lora_rank",
    type=click.IntRange(min=0),
    default=0,
    help="Train rank-R LoRA adapters, base frozen.",
)
@click.option(
    "--lora-alpha", type=FiniteFloat(min=0, min_open=True), default=16.0, show_default=True
)
@click.option(
    "--lora-targets",
    multiple=True,
    help="Glob over linear weight names (default: all but the LM head).",
)
@click.option(
    "--compile",
    "compile_",
    is_flag=True,
    help="torch.compile the training forward (faster long runs).",
)
@click.option("--fresh", is_flag=True, help="Ignore this run's checkpoints in the output folder.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace an output folder holding another irgraph output or training run (kept "
    "aside until the new run is saved, put back if it fails); a folder irgraph did not "
    "write, or one holding this command's inputs, is never replaced.",
)
def train(
    source: str,
    corpus: tuple[str, ...],
    steps: int,
    out_dir: str,
    size: Size,
    tokenizer: str | None,
    bf16: bool | None,
    lora_rank: int,
    lora_targets: tuple[str, ...],
    compile_: bool,
    fresh: bool,
    force: bool,
    **recipe: float,
) -> None:
    """Train SOURCE (graph folder, HF checkpoint or zoo name) on --corpus for --steps into DIR."""
    main = int(os.environ.get("RANK", "0")) == 0
    seed = int(recipe["seed"])
    inputs = [source, *corpus, tokenizer]
    check_location(out_dir, [i for i in inputs if i])  # before loading anything
    graph, extra = _load_trainee(source, size, seed, recipe, lora_rank > 0)  # before torch loads

    from irgraph.codegen.torch.trainer import (
        EvalInfo,
        StepInfo,
        TrainConfig,
        Trainer,
        bf16_supported,
        foreign_run,
        save_trained,
    )
    from irgraph.text import ByteTokenizer, JsonTokenizer, load_corpus

    tok_file = tokenizer or extra.get(TOKENIZER)
    tok = JsonTokenizer(tok_file) if tok_file else ByteTokenizer()
    config = TrainConfig.from_dict(
        {
            **recipe,
            "steps": steps,
            "bf16": bf16_supported() if bf16 is None else bf16,
            "lora_rank": lora_rank,
            "lora_targets": list(lora_targets),
            "compile": compile_,
        }
    )
    source_id = str(Path(source).resolve()) if Path(source).exists() else source
    foreign = foreign_run(out_dir, graph, config, source_id)
    resume, replaced = _plan_output(out_dir, inputs, foreign, force)
    data = load_corpus(
        corpus,
        tok,
        heldout_fraction=config.heldout_fraction,
        seed=seed,
        vocab_size=vocab_size(graph),
    )
    if main:
        click.echo(
            f"{graph.name}: {len(data.train):,} training tokens ({data.train_files} files), "
            f"{len(data.heldout):,} held out ({data.heldout_files} files), tokens: "
            f"{data.tokenizer}, bf16 {'on' if config.bf16 else 'off'}"
        )
    trainer = Trainer(graph, data, config, out_dir, source=source_id)
    bar = progress.bar(draw=main, total=steps, desc="training", unit="step")

    def on_step(s: StepInfo) -> None:
        bar.n = s.step
        bar.set_postfix(loss=f"{s.loss:.4f}", tok_s=f"{s.tokens_per_s:,.0f}", lr=f"{s.lr:.2e}")

    def on_eval(e: EvalInfo) -> None:
        if main:
            bar.write(
                f"step {e.step}: held-out loss {e.loss:.4f}, perplexity {e.perplexity:.2f}, "
                f"{e.bits_per_byte:.3f} bits/byte"
            )

    with replaced_in_place(out_dir, replaced, owner=main):
        result = trainer.run(resume=resume and not fresh, on_step=on_step, on_eval=on_eval)
        bar.close()
        if result.resumed_from and main:
            click.echo(f"resumed from step {result.resumed_from}")
        if result.merged_eval is not None and main and result.evals:
            trained, merged = result.evals[-1].bits_per_byte, result.merged_eval.bits_per_byte
            click.echo(
                f"LoRA merged with the pruning mask (W + M*(alpha/r*BA)): {merged:.4f} bits/byte "
                f"held out, the adapter as trained {trained:.4f} (delta {merged - trained:+.4f})"
            )
        if main:
            save_trained(
                out_dir,
                result,
                config,
                {"source": source, "tokenizer": data.tokenizer},
                extra_files={TOKENIZER: tok_file} if tok_file else None,
            )
    if main:
        click.echo(f"saved the trained graph to {out_dir}")
        curve = write_loss_curve(
            out_dir,
            [(s.step, s.loss) for s in result.history],
            [(e.step, e.loss) for e in result.evals],
            f"{graph.name}: {config.batch_size} x {config.seq_len} tokens per step",
        )
        if curve is not None:
            click.echo(f"loss curve: {curve}")


def _load_trainee(
    source: str, size: Size, seed: int, recipe: dict[str, float], lora: bool
) -> tuple[Graph, dict[str, Path]]:
    """load_source, but a published-size zoo model gets seeded weights if training it fits in
    memory, and a refusal with the estimate if not (train_memory.py)."""
    from irgraph import model_zoo

    if size != "published" or Path(source).exists() or looks_like_a_path(source):
        return load_source(source, size, seed)
    name = model_zoo.get(source).name
    config = model_zoo.config(name, "published")
    params = cost(model_zoo.build(name, size="published")).params
    batch, accum = int(recipe["batch_size"]), int(recipe["grad_accum"])
    need = train_memory.estimate(
        config, params, -(-batch // accum), int(recipe["seq_len"]), lora=lora
    )
    train_memory.check_fits(name, need, train_memory.available_memory())
    click.echo(
        f"{name} at published size: seeded random weights (seed {seed}), training needs about "
        f"{train_memory.gib(need.total)}",
        err=True,
    )
    return model_zoo.build_graph(config, weights="random", seed=seed), {}


def _plan_output(
    out_dir: str, inputs: list[str | None], foreign: str | None, force: bool
) -> tuple[bool, str]:
    """(resume?, what --force replaces) for -o, or a refusal, before any data is read.

    A folder holding this run's checkpoints resumes; one holding another run's is
    refused unless --force, as is any other non-empty folder (the output-folder rule).
    """
    if foreign is None and any(Path(out_dir).glob(CHECKPOINT_STATE)):
        return True, ""
    if foreign is not None and not force:
        raise ConfigError(
            f"the output folder is not this run's: {foreign}; choose another folder, or pass "
            "--force to replace it",
            where=out_dir,
        )
    return False, check_output_option(out_dir, inputs, force)
