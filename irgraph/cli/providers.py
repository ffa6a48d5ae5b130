"""What the CLI hands passes through their PassContext: backend providers (progress: progress.py).

Passes never import torch; the CLI may. `TorchGradients` computes gradients of
the language-model loss with the torch backend, importing it only when a pass
asks for gradients, so a pipeline that needs none never loads torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from irgraph.ir import Graph


class TorchGradients:
    """GradientProvider: mean gradient of the next-token loss over the batches, per weight."""

    def gradients(self, graph: Graph, batches: Sequence[np.ndarray]) -> Mapping[str, np.ndarray]:
        import torch

        from irgraph.codegen.torch import to_torch, torch_feeds
        from irgraph.codegen.torch.objective import lm_batch, lm_loss
        from irgraph.lm import graph_inputs

        module = to_torch(graph)
        inputs = graph_inputs(graph)
        for batch in batches:
            feeds, targets, weights = lm_batch(inputs, np.asarray(batch, np.int64), graph.meta)
            out = module(**torch_feeds(feeds))
            loss = lm_loss(out["logits"], torch.from_numpy(targets), torch.from_numpy(weights))
            (loss / len(batches)).backward()
        return {
            name: p.grad.detach().numpy().copy()
            for name, p in module.named_parameters()
            if p.grad is not None
        }
