"""What `irgraph compile` checks so that it exits 0 only with an artifact that runs.

Before the work: every compile option given applies to the target (`--dtype` means nothing
to TVM, `--cuda-arch` nothing but to tvm-cuda), and the graph has the outputs `run` and
`generate` read (`logits`, and a `present.*` for every `past_key_values.*`). After it: the
artifact is opened with the runtime installed here and one token goes through it (a forward
and a generation step); an artifact that does not load is removed. Where the target runs
elsewhere (tvm-cuda without a GPU, tvm-aarch64) or `--no-load-check` says it is built for
another machine, the load is skipped and said so.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import click
import numpy as np

from irgraph import lm
from irgraph.backends import BACKENDS, Backend
from irgraph.errors import ConfigError, DeviceUnavailable, IrgraphError
from irgraph.ir import Graph


def refuse_inapplicable_options(backend: Backend, target: str) -> None:
    """UsageError for a compile option given on the command line that `target` does not use."""
    context = click.get_current_context()
    for other in BACKENDS:
        for option in other.options:
            given = (
                context.get_parameter_source(option.name) is not click.core.ParameterSource.DEFAULT
            )
            if given and not backend.applies(option.name, target):
                users = [t for b in BACKENDS for t in b.targets if b.applies(option.name, t)]
                raise click.UsageError(
                    f"{option.flag} does not apply to target {target} (only to {', '.join(users)})"
                )


def check_lm_outputs(graph: Graph) -> None:
    """ConfigError unless `graph` has the outputs an artifact's `run`/`generate` read."""
    missing = [] if lm.LOGITS in graph.outputs else [lm.LOGITS]
    missing += [
        lm.present_name(p)
        for p in lm.cache_inputs(lm.graph_inputs(graph))
        if lm.present_name(p) not in graph.outputs
    ]
    if missing:
        raise ConfigError(
            "graph lacks outputs a compiled language model needs: logits, and present.* "
            "for every past_key_values.* input",
            expected=", ".join(missing),
            got=", ".join(graph.outputs) or "no outputs",
            where=graph.name,
        )


def load_check(folder: Path, graph: Graph, options: Mapping[str, str]) -> None:
    """Open the artifact just written and run one token through it; remove it if that fails."""
    import irgraph.runtimes

    started = time.perf_counter()
    try:
        session = irgraph.runtimes.open(folder)
        token = np.asarray([[int(graph.meta.get("bos_token_id") or 0)]], dtype=np.int64)
        encoder = token if lm.is_encoder_decoder(session.inputs) else None
        logits = session.forward(token, encoder_ids=encoder)
        session.generate(token, 1)
    except DeviceUnavailable as e:
        click.echo(f"load check skipped: {e.message}")
        return
    except IrgraphError as e:
        shutil.rmtree(folder, ignore_errors=True)
        chosen = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items())
        raise ConfigError(
            f"the artifact does not run on this machine, so it was removed ({e}); "
            f"it was compiled with {chosen or 'the default options'}: choose others, or pass "
            "--no-load-check to build it for another machine",
            where=str(folder),
        ) from None
    if not np.isfinite(logits).all():
        shutil.rmtree(folder, ignore_errors=True)
        raise ConfigError(
            "the artifact's logits for one token are not finite, so it was removed",
            where=str(folder),
        )
    click.echo(f"load check: opened and ran one token in {time.perf_counter() - started:.2f} s")
