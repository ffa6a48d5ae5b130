"""hashes.json for the ~125M LLaMA check: sha256 of a few checkpoint tensors and of a few tensors of
the artifact's weights.safetensors, so the device can prove it regenerated the same weights.

usage: python prep_big.py ARTIFACT_DIR HF_CHECKPOINT_DIR
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "payload"))
import big_llama  # noqa: E402

DERIVED = [
    "embed.weight",
    "layers.0.attn.q.weight",
    "layers.0.attn.k.weight",
    "layers.5.mlp.down.weight",
    "layers.11.attn.v.weight",
    "layers.11.mlp.gate.weight",
    "lm_head.weight",
]

if __name__ == "__main__":
    art, hf = Path(sys.argv[1]), Path(sys.argv[2])
    names = {
        a["name"] for a in json.loads((art / "manifest.json").read_text())["tvm"]["weight_args"]
    }
    missing = [n for n in DERIVED if n not in names]
    if missing:
        sys.exit(f"artifact has no weights named {missing}")
    out = {
        "checkpoint": big_llama.hashes(hf / "model.safetensors", big_llama.HASHED),
        "derived": big_llama.hashes(art / "weights.safetensors", DERIVED),
    }
    (art / "hashes.json").write_text(json.dumps(out, indent=1))
    print(f"{art / 'hashes.json'}: {len(out['checkpoint'])} + {len(out['derived'])} tensor hashes")
