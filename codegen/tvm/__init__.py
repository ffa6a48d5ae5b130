"""Apache TVM backend: Relax modules built straight from irgraph graphs.

Imported as `irgraph.codegen.tvm`:

    from irgraph.codegen import tvm as tvm_codegen
    # target: tvm-llvm, tvm-cuda or tvm-aarch64
    tvm_codegen.compile_graph(graph, "out/llama-tvm", target="tvm-llvm")
    session = irgraph.runtimes.open("out/llama-tvm")

`lowering` builds the Relax `IRModule` (one lowering per registry op, in
`lower_basic`, `lower_attention`, `lower_moe`), `linear` holds the packed-weight
CPU kernel, `targets` turns a target name into TVM targets and build pipelines
(llvm, cuda with dlight and an nvcc check, aarch64 cross-linking), `artifact`
writes the artifact folder the runtime (`irgraph.runtimes.tvm`, which also checks
its manifest) and the native edge runner (`runner/`, driven from Python by `edge`) load.
"""

from irgraph.codegen.tvm import lower_attention, lower_basic, lower_moe  # noqa: F401  (register lowerings)
from irgraph.codegen.tvm.artifact import DEFAULT_PASSES, compile_graph
from irgraph.codegen.tvm.lowering import FUNCTION, LOWERINGS, WeightArg, build_module
from irgraph.codegen.tvm.targets import TARGETS

__all__ = [
    "DEFAULT_PASSES",
    "FUNCTION",
    "LOWERINGS",
    "TARGETS",
    "WeightArg",
    "build_module",
    "compile_graph",
]
