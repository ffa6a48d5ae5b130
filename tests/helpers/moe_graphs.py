"""`moe_graph`: one MoE layer (router + experts) with seeded weights for the backends' MoE tests."""

from __future__ import annotations

import numpy as np

from irgraph import GraphBuilder

E, H, FF = 8, 16, 24


def moe_graph(gated: bool, act: str, seed: int = 0, hidden: int = H, ffn: int = FF, **router):
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"moe-{act}-{'gated' if gated else 'plain'}")
    x = b.input("x", f"f32[batch, seq, {hidden}]")
    weights = {"router": rng.standard_normal((E, hidden)).astype(np.float32)}
    for name, shape in (("up", (E, ffn, hidden)), ("down", (E, hidden, ffn))) + (
        (("gate", (E, ffn, hidden)),) if gated else ()
    ):
        weights[name] = (0.3 * rng.standard_normal(shape)).astype(np.float32)
    w, idx = b.moe_router(x, b.param("router", f"f32[{E}, {hidden}]"), **router)
    experts = [b.param(n, f"f32[{', '.join(map(str, weights[n].shape))}]") for n in ("up", "down")]
    gate = [b.param("gate", f"f32[{E}, {ffn}, {hidden}]")] if gated else []
    b.output("y", b.moe_experts(x, w, idx, *experts, *gate, act=act))
    return b.build(weights)
