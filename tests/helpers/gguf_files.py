"""Small GGUF files for the importer's tests: copies of a file with tensors or keys changed,
and the bad-input corpus (tests/bad_inputs/gguf/), made from tiny hand-built headers.

    python -m tests.helpers.gguf_files tests/bad_inputs/gguf    # regenerate the corpus
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def rewrite(
    src: Path,
    dst: Path,
    *,
    arch: str | None = None,
    tensors: Mapping[str, tuple[np.ndarray, str]] | None = None,
    meta: Mapping[str, tuple[Any, Any]] | None = None,
) -> Path:
    """`src` copied to `dst` with `tensors` (name -> (array or raw bytes, GGML type name))
    replaced and `meta` (key -> (value, GGUFValueType)) added or replaced."""
    import gguf

    reader = gguf.GGUFReader(src)
    arch = arch or reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(dst), arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in (meta or {}):
            continue
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
    for key, (value, vtype) in (meta or {}).items():
        writer.add_key_value(key, value, vtype)
    for t in reader.tensors:
        array, ggml = (tensors or {}).get(t.name, (t.data, t.tensor_type.name))
        raw = getattr(gguf.GGMLQuantizationType, ggml)
        raw = raw if np.asarray(array).dtype == np.uint8 else None
        writer.add_tensor(t.name, np.ascontiguousarray(array), raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


def random_blocks(ggml: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Random bytes as a `ggml` block tensor [rows, bytes], every f16 scale a sane value."""
    import gguf

    qtype = getattr(gguf.GGMLQuantizationType, ggml)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
    scale = np.ascontiguousarray(0.01 * rng.random((rows, cols // block, 2)) + 0.001)
    f16 = scale.astype(np.float16).view(np.uint8)  # [.., 4] bytes: two f16 values
    if ggml in ("Q4_K", "Q5_K", "Q2_K"):  # d, dmin at the block's start (Q2_K: at its end)
        at = 0 if ggml != "Q2_K" else size - 4
        raw[..., at : at + 4] = f16
    elif ggml in ("Q6_K", "Q3_K"):  # d at the end
        raw[..., size - 2 :] = f16[..., :2]
    else:  # Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: d (and m) first
        raw[..., : 4 if ggml.endswith("_1") else 2] = f16[..., : 4 if ggml.endswith("_1") else 2]
    return raw.reshape(rows, -1)


def assert_dequantization_matches(path: Path, graph: Any) -> int:
    """gguf's own dequantization of every tensor in `path` equals the imported `graph`'s
    weight bit for bit, read independently of the importer's layout code: q/k rows put back in
    the IR's rotary order (LLaMA's NORM rope), fused attn_qkv rows cut at the graph's q, k and
    v widths, Falcon-40B's norms renamed; a tensor without a parameter must be all zeros (a
    bias the writer filled in) or the embedding again (a tied head). Returns the count."""
    import gguf

    from irgraph.gguf_names import ir_name
    from irgraph.model_zoo.gguf_import.tensors import roles, rope_row_orders

    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    layers = sum(n.endswith(".attn_norm.weight") for n in graph.params)
    names = {t.name for t in reader.tensors}
    falcon_40b = "blk.0.attn_norm_2.weight" in names
    table = roles(
        layers, {"attn_norm": "ATTN_NORM_2", "mlp_norm": "ATTN_NORM"} if falcon_40b else None
    )
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    orders = {}
    if arch == "llama":
        heads, kv_heads = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
        head_dim = meta.get("llama.attention.key_length", meta["llama.embedding_length"] // heads)
        orders = rope_row_orders(heads, kv_heads, head_dim)
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        theirs = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape)
        if ".attn_qkv." in t.name:
            layer, kind = int(t.name.split(".")[1]), t.name.rsplit(".", 1)[1]
            start = 0
            for x in "qkv":
                name = f"layers.{layer}.attn.{x}.{kind}"
                rows = int(graph.params[f"layers.{layer}.attn.{x}.weight"].type.shape[0])
                _same(graph, name, theirs[start : start + rows], t)
                start += rows
            assert start == theirs.shape[0], t.name
            continue
        if t.name == "rope_freqs.weight":  # LLaMA-3 scaling: the rotary's attrs, no weight
            continue
        layer, role, kind = table[t.name]
        if role in orders:
            theirs = theirs[np.argsort(orders[role])]
        _same(graph, ir_name(layer, role, kind), theirs, t)
    return len(reader.tensors)


def _same(graph: Any, name: str, theirs: np.ndarray, t: Any) -> None:
    if name not in graph.params:
        if name == "lm_head.weight":  # a tied head written twice
            name = "embed.weight"
        else:  # a bias the builder requires and the model lacks
            assert not np.any(theirs), t.name
            return
    ours = np.asarray(graph.weight(name))
    assert ours.dtype == theirs.dtype or t.tensor_type.name in ("F16", "BF16"), t.name
    theirs32 = np.ascontiguousarray(theirs, dtype=np.float32)
    assert np.ascontiguousarray(ours, np.float32).tobytes() == theirs32.tobytes(), t.name


def float_copy(graph: Any) -> Any:
    """`graph` with every weight dequantized and declared f32 (the same function)."""
    from irgraph.dtypes import DType
    from irgraph.retype import retype_params
    from irgraph.types import TensorType
    from irgraph.weights import WeightStore

    types = {n: TensorType(DType.f32, v.type.shape) for n, v in graph.params.items()}
    copy = retype_params(graph, types)
    copy.weights = WeightStore({n: np.asarray(graph.weight(n), np.float32) for n in graph.params})
    return copy


def _header_only(path: Path, arch: str, tensor_type: int | None = None) -> Path:
    """A minimal GGUF: `arch`, a few keys, one tiny F32 tensor (its type patched if asked)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if tensor_type is not None:
        data = bytearray(path.read_bytes())
        name = b"token_embd.weight"
        at = data.index(name) + len(name) + 4 + 2 * 8  # n_dims u32, two u64 dims, then the type
        data[at : at + 4] = int(tensor_type).to_bytes(4, "little")
        path.write_bytes(bytes(data))
    return path


def write_corpus(folder: Path) -> None:
    """The bad GGUF files of tests/bad_inputs/gguf (each a few hundred bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    _header_only(folder / "unknown_ggml_type.gguf", "llama", tensor_type=99)
    _header_only(folder / "unknown_architecture.gguf", "mamba")
    whole = _header_only(folder / "truncated_tensor_data.gguf", "llama").read_bytes()
    (folder / "truncated_tensor_data.gguf").write_bytes(whole[: len(whole) - 64])
    (folder / "truncated_header.gguf").write_bytes(whole[:40])
    (folder / "not_gguf.gguf").write_bytes(b"this is not a GGUF file\n")
    (folder / "empty.gguf").write_bytes(b"")


if __name__ == "__main__":
    write_corpus(Path(sys.argv[1]))
