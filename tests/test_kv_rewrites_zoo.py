"""Every KV-cache rewrite on every zoo twin it applies to, through the end-to-end check
(prefill + 16 decode steps, each graph with its own cache): exact ones within 1e-5, the
approximate one's error reported; where a rewrite does not apply its note says why.
All 43 twins x 4 rewrites take about 9 s. Measured 2026-12-06: paged-kv applies to 23 twins
(the rest have ALiBi/T5 bias, prefix-LM or banded masks), sliding-window-cache to GPT-3 and
Codex (banded layers), quantize-kv and kv-layout to every twin but DeepSeek-v2 (latent cache).
"""

from __future__ import annotations

import pytest

import irgraph.model_zoo as zoo
from irgraph.passes import run_pipeline

REWRITES = {  # pass -> exact?
    "paged-kv(block=4)": True,
    "sliding-window-cache": True,
    "quantize-kv": False,
    "kv-layout(layout=bsnh)": True,
}
APPLIES = {"paged-kv(block=4)": 23, "sliding-window-cache": 2, "quantize-kv": 42}


@pytest.mark.parametrize("name", zoo.names())
@pytest.mark.parametrize("rewrite", list(REWRITES))
def test_rewrite_on_zoo_twin(name, rewrite):
    g = zoo.build(name)
    result = run_pipeline(g, rewrite, check=True, check_steps=16)
    (record,) = result.records
    if not record.modified:
        assert record.note, f"{rewrite} on {name}: unchanged without saying why"
        return
    assert record.max_error is not None
    if REWRITES[rewrite]:
        assert record.max_error <= 1e-5, f"{rewrite} on {name}: {record.max_error:.2e}"
    else:
        assert record.max_error < 0.5, f"{rewrite} on {name}: {record.max_error:.2e}"


def test_where_each_rewrite_applies():
    for rewrite, count in APPLIES.items():
        changed = [
            n for n in zoo.names() if run_pipeline(zoo.build(n), rewrite).records[0].modified
        ]
        assert len(changed) == count, (rewrite, changed)
