"""PyTorch backend: an irgraph Graph as a trainable `torch.nn.Module`.

Imported as `irgraph.codegen.torch`.

    module = to_torch(graph)                 # parameters named as the IR's weights
    out = module(**feeds)                    # {output name: tensor}, same inputs as the graph
    trained = with_weights(graph, module)    # a new Graph with the module's weights

Lowerings are registered per op name on `lowerings.LOWERINGS` (a `LoweringTable`,
`irgraph.codegen.lowering`); a graph with ops that have none fails with one
CodegenError naming them and target "torch".
"""

from irgraph.codegen.torch.lowerings import LOWERINGS, TorchContext, lowers
from irgraph.codegen.torch.module import (
    GraphModule,
    numpy_runner,
    to_numpy,
    to_torch,
    torch_feeds,
    with_weights,
)

__all__ = [
    "LOWERINGS",
    "GraphModule",
    "TorchContext",
    "lowers",
    "numpy_runner",
    "to_numpy",
    "to_torch",
    "torch_feeds",
    "with_weights",
]
