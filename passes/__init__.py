"""Graph-to-graph passes (imported as `irgraph.passes`).

    from irgraph.passes import run_pipeline
    result = run_pipeline(graph, "cse,fuse-parallel-attention,dce", check=True)
    print(result.table())

manager.py holds the pass base class, options, registry, pipeline parser and runner; context.py what
a pass may use besides the graph (calibration data, seed, progress, providers); equivalence.py the
interpreter-based check (random-io and end-to-end); rewrite.py the pattern/check/rewrite facility.
Each pass lives in its own module, imported here to register it.
"""

from irgraph.errors import PassError
from irgraph.passes import (  # noqa: F401  (importing registers the passes)
    absorb_latent,
    canonicalize,
    constant_fold,
    cse,
    dce,
    fuse_add_norm,
    fuse_gate_up,
    fuse_parallel_attention,
    fuse_qkv,
    gqa_to_mha,
    kv_layout,
    last_position,
    merge_lora,
    mha_to_gqa,
    paged_kv,
    parallelize_blocks,
    prune,
    quantize,
    quantize_kv,
    sliding_window_cache,
    smoothquant,
)
from irgraph.passes.context import GradientProvider, PassContext, load_calibration
from irgraph.passes.equivalence import (
    CHECK_MODES,
    END_TO_END,
    RANDOM_IO,
    check_equivalent,
    compare,
)
from irgraph.passes.manager import (
    APPROXIMATE,
    ARCH_CHANGE,
    EXACT,
    PASSES,
    OptionSpec,
    Pass,
    PassResult,
    PipelineResult,
    get_pass,
    make_pass,
    option,
    option_specs,
    parse_pipeline,
    register_pass,
    run_pipeline,
)
from irgraph.passes.prune import ffn, heads, layers  # noqa: F401  (structured pruning passes)
from irgraph.passes.rewrite import Explanation, Rule, apply_rules, explain


def rules() -> dict[str, list[Rule]]:
    """Every named rewrite rule, and every rule-based pass by its name (for `irgraph explain`)."""
    table: dict[str, list[Rule]] = {}
    for rule in canonicalize.RULES:
        table[rule.name] = [rule]
    table["canonicalize"] = list(canonicalize.RULES)
    parallel = fuse_parallel_attention.FuseParallelAttention().rules()
    for named in (
        *parallel,
        fuse_qkv.FuseQkvRule(),
        fuse_gate_up.FuseGateUpRule(),
        parallelize_blocks.ParallelizeRule(),
        fuse_add_norm.RULE,
        last_position.LastPositionRule(),
    ):
        table[named.name] = [named]
    table["fuse-parallel-attention"] = parallel
    return table


def find_rules(name: str) -> list[Rule]:
    table = rules()
    if name not in table:
        raise PassError(f"unknown rule {name!r}", expected="one of " + ", ".join(sorted(table)))
    return table[name]


__all__ = [
    "APPROXIMATE",
    "ARCH_CHANGE",
    "CHECK_MODES",
    "END_TO_END",
    "EXACT",
    "PASSES",
    "RANDOM_IO",
    "Explanation",
    "GradientProvider",
    "OptionSpec",
    "Pass",
    "PassContext",
    "PassError",
    "PassResult",
    "PipelineResult",
    "Rule",
    "apply_rules",
    "check_equivalent",
    "compare",
    "explain",
    "find_rules",
    "get_pass",
    "load_calibration",
    "make_pass",
    "option",
    "option_specs",
    "parse_pipeline",
    "register_pass",
    "rules",
    "run_pipeline",
]
