"""Slow tier: a > 2 GB sharded checkpoint compiles to external-data ONNX and runs.

The checkpoint is a 2-layer LLaMA with a 2^18-token vocabulary (embedding and
head ~1 GiB each) in three safetensors shards. Compilation and the run happen
in child processes whose peak RSS is measured: each must stay well under two
copies of the weights (the protobuf never holds them; tensors stream to
model.onnx.data one at a time).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from irgraph.weights import save_safetensors

VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN = 1 << 18, 1024, 8, 4, 128, 2048

CHILD = r"""
import json, resource, sys
import numpy as np
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from irgraph import GraphBuilder
from irgraph.weights import WeightStore
folder, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "compile":
    from irgraph.codegen.onnx import compile_graph
    store = WeightStore.open(*sorted(folder.glob("shard-*.safetensors")))
    V, H, NH, NKV, D, F = json.loads((folder / "dims.json").read_text())
    b = GraphBuilder("big", meta={"vocab_size": V})
    ids, pos = b.input("input_ids", "i64[batch, seq]"), b.input("position_ids", "i64[batch, seq]")
    mask = b.input("attention_mask", "i64[batch, past+seq]")
    p = lambda n: b.param(n, f"f32[{', '.join(map(str, store[n].shape))}]")
    x = b.embedding(ids, p("embed"))
    for i in range(2):
        h = b.rms_norm(x, p(f"l{i}.norm"))
        q = b.rotary(b.reshape(b.linear(h, p(f"l{i}.q")), shape=[0, 0, NH, D]), pos)
        k = b.rotary(b.reshape(b.linear(h, p(f"l{i}.k")), shape=[0, 0, NKV, D]), pos)
        v = b.reshape(b.linear(h, p(f"l{i}.v")), shape=[0, 0, NKV, D])
        pk = b.input(f"past_key_values.{i}.key", f"f32[batch, {NKV}, past, {D}]")
        pv = b.input(f"past_key_values.{i}.value", f"f32[batch, {NKV}, past, {D}]")
        a, ck, cv = b.attention(q, k, v, pk, pv, mask)
        b.output(f"present.{i}.key", ck); b.output(f"present.{i}.value", cv)
        x = b.add(x, b.linear(b.reshape(a, shape=[0, 0, NH * D]), p(f"l{i}.o")))
        mlp = b.glu(b.linear(x, p(f"l{i}.gate")), b.linear(x, p(f"l{i}.up")), act="silu")
        x = b.add(x, b.linear(mlp, p(f"l{i}.down")))
    b.output("logits", b.linear(b.rms_norm(x, p("norm")), p("head")))
    compile_graph(b.build(store), folder / "art")
    result = {}
else:
    import irgraph.runtimes
    session = irgraph.runtimes.open(folder / "art")
    result = {"tokens": session.generate([[1, 2, 3, 4]], 3)[0]}
result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(result))
"""


def _child(folder: Path, mode: str) -> dict:
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), mode, root],
        capture_output=True,
        text=True,
        env={"OMP_NUM_THREADS": "1", "IRGRAPH_ORT_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sharded_checkpoint_over_2gb_compiles_and_runs(tmp_path):
    rng = np.random.default_rng(0)
    shapes = {"embed": (VOCAB, HIDDEN), "head": (VOCAB, HIDDEN), "norm": (HIDDEN,)}
    for i in range(2):
        shapes.update(
            {
                f"l{i}.norm": (HIDDEN,),
                f"l{i}.q": (HEADS * HEAD_DIM, HIDDEN),
                f"l{i}.k": (KV_HEADS * HEAD_DIM, HIDDEN),
                f"l{i}.v": (KV_HEADS * HEAD_DIM, HIDDEN),
                f"l{i}.o": (HIDDEN, HEADS * HEAD_DIM),
                f"l{i}.gate": (FFN, HIDDEN),
                f"l{i}.up": (FFN, HIDDEN),
                f"l{i}.down": (HIDDEN, FFN),
            }
        )
    shards = [["embed"], ["head"], [n for n in shapes if n not in ("embed", "head")]]
    total = 0
    for k, names in enumerate(shards):  # one shard in memory at a time
        arrays = {
            n: (
                rng.standard_normal(shapes[n], dtype=np.float32) * 0.02 + (1 if "norm" in n else 0)
            ).astype(np.float32)
            for n in names
        }
        total += sum(a.nbytes for a in arrays.values())
        save_safetensors(arrays, tmp_path / f"shard-{k}.safetensors")
        del arrays
    (tmp_path / "dims.json").write_text(json.dumps([VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN]))
    assert total > 2 << 30
    built = _child(tmp_path, "compile")
    art = tmp_path / "art"
    assert (art / "model.onnx").stat().st_size < 10 << 20  # the protobuf holds no weights
    assert (
        art / "model.onnx.data"
    ).stat().st_size >= total  # every weight once (head transposed, q/k/v fused)
    assert built["peak_rss"] < 1.6 * total, built  # mapped weights + one tensor being converted
    ran = _child(tmp_path, "run")
    assert len(ran["tokens"]) == 3
    assert ran["peak_rss"] < 1.6 * total, ran
