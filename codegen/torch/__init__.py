"""PyTorch backend: an irgraph Graph as a trainable `torch.nn.Module` (imported as `irgraph.codegen.torch`).

    module = to_torch(graph)                 # parameters named as the IR's weights
    out = module(**feeds)                    # {output name: tensor}, same inputs as the graph
    trained = with_weights(graph, module)    # a new Graph with the module's weights

Lowerings are registered per op name (`lowerings.LOWERINGS`); a graph with an
op that has none fails with a CodegenError naming the op and target "torch".
"""

from irgraph.codegen.torch.lowerings import LOWERINGS, get_lowering, lowering
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
    "get_lowering",
    "lowering",
    "numpy_runner",
    "to_numpy",
    "to_torch",
    "torch_feeds",
    "with_weights",
]
