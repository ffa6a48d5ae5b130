"""Apache TVM backend: Relax modules built straight from irgraph graphs (imported as `irgraph.codegen.tvm`).

    from irgraph.codegen import tvm as tvm_codegen
    tvm_codegen.compile_graph(graph, "out/llama-tvm", target="tvm-llvm")

`lowering` builds the Relax `IRModule` (one lowering per registry op),
`linear` holds the packed-weight CPU kernel, `targets` turns a target name
into TVM targets and build pipelines (llvm, cuda with dlight, aarch64 cross),
and `artifact` writes the artifact folder the runtime (`irgraph.runtimes.tvm`)
and the native edge runner (`runner/`) load.
"""

from irgraph.codegen.tvm import lower_attention, lower_basic, lower_moe  # noqa: F401  (register lowerings)
from irgraph.codegen.tvm.lowering import FUNCTION, LOWERINGS, WeightArg, build_module

__all__ = ["FUNCTION", "LOWERINGS", "WeightArg", "build_module"]
