"""GGUF import: a llama.cpp model file -> an irgraph Graph with weights (`irgraph import-gguf`).

    imported = import_gguf("model.gguf")                  # .graph, .vocabulary, .dequantized
    import_to_dir("model.gguf", "out/model")              # saved graph folder (+ tokenizer.json)

The inverse of `codegen/gguf`, as `hf_import` is of a Hugging Face checkpoint: the file's
architecture row (config.py) turns its metadata into a ModelConfig (refusing keys and
architectures it does not map), the zoo builder builds the graph, and each GGUF tensor fills
the parameter of its role (tensors.py), in its own storage where the IR has it exactly:
F32 / F16 / BF16 as such, Q8_0 / Q4_0 / Q5_0 / Q6_K (and Q4_1 with integer zero points) as
the IR's quantized form whose dequantization is gguf's bit for bit (blocks.py). Other block
types (Q4_K, Q5_K, Q2_K, IQ*) are refused by name unless `dequantize`, which stores gguf-py's
dequantization in f32 (or f16) and lists each such tensor and why in `dequantized`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import ConfigError
from irgraph.gguf_names import gguf_name
from irgraph.ir import Graph
from irgraph.model_zoo.gguf_import.config import Dims, Meta, Row, model_config, row
from irgraph.model_zoo.gguf_import.layout import drop_duplicate_head, drop_zero_biases, split_qkv
from irgraph.model_zoo.gguf_import.reader import GgufFile, open_gguf
from irgraph.model_zoo.gguf_import.tensors import GgufWeights, Param, plan, rope_row_orders
from irgraph.model_zoo.gguf_import.tokenizer import Vocabulary, token_ids, vocabulary
from irgraph.output import check_output
from irgraph.progress import Progress, no_progress
from irgraph.registry import get_op
from irgraph.retype import retype_params
from irgraph.serialize import save
from irgraph.tokenizer import check_tokenizer
from irgraph.types import TensorType

TOKENIZER_FILE = "tokenizer.json"
DEQUANTIZE_DTYPES = {"f32": DType.f32, "f16": DType.f16}
ROPE_FREQS = "rope_freqs.weight"  # LLaMA-3 scaling's divisors (rope_freqs.py)
SECOND_NORM = {"attn_norm": "ATTN_NORM_2"}  # Falcon-40B's attention norm
# the block roles whose bias tensors the config's qkv_bias, out_bias, mlp_bias and norm_bias read
BIAS_ROLES: tuple[str, ...] = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate")
BIAS_ROLES += ("mlp.down", "attn_norm", "mlp_norm")


@dataclass
class Imported:
    graph: Graph
    vocabulary: Vocabulary
    dequantized: dict[str, str] = field(default_factory=dict)  # GGUF tensor -> why


def _dims(tensors: dict[str, Any], arch: Row, where: str) -> tuple[Dims, dict[str, str]]:
    """What the (laid-out) tensors say about the model, and the architecture's role names."""
    embed = tensors.get(gguf_name(None, "embed", "weight"))
    if embed is None:
        raise ConfigError("no token_embd.weight tensor", where=where)
    up_exps = tensors.get(gguf_name(0, "moe.experts.up", "weight"))
    positions = tensors.get(gguf_name(None, "embed_positions", "weight"))
    dims = Dims(
        vocab=int(embed.shape[-1]),  # ggml order: [hidden, vocab]
        expert_ffn=int(up_exps.shape[1]) if up_exps is not None else 0,
        biases=frozenset(),
        untied=gguf_name(None, "lm_head", "weight") in tensors,
        positions=int(positions.shape[-1]) if positions is not None else 0,
        embed_norm=gguf_name(None, "embed_norm", "weight") in tensors,
        attn_norm_2=gguf_name(0, "attn_norm", "weight", SECOND_NORM) in tensors,
    )
    freqs = tensors.get(ROPE_FREQS) if arch.rope_freqs else None
    if freqs is not None:
        values = np.asarray(freqs.data, dtype=np.float64).reshape(-1)
        dims = replace(dims, rope_freqs=tuple(float(v) for v in values))
    roles = arch.roles(dims)
    biases = {role for role in BIAS_ROLES if gguf_name(0, role, "bias", roles) in tensors}
    biases |= {role for role in ("norm", "embed_norm") if gguf_name(None, role, "bias") in tensors}
    return replace(dims, biases=frozenset(biases)), roles


def _layout(f: GgufFile, arch: Row, layers: int) -> dict[str, Any]:
    """The file's tensors in the IR's layout (layout.py): q/k/v split, zero biases and a
    duplicated tied head dropped."""
    where = str(f.path)
    tensors = f.tensors
    if arch.fused_qkv:
        m = Meta(f.meta, arch.name, where)
        heads = m.int("attention.head_count")
        tensors = split_qkv(tensors, layers, heads, m.int("attention.head_count_kv", heads), where)
    second = gguf_name(0, "attn_norm", "weight", SECOND_NORM) in tensors
    roles = arch.roles(Dims(0, 0, frozenset(), False, attn_norm_2=second))
    return drop_duplicate_head(drop_zero_biases(tensors, layers, roles))


def _stored_dtype_params(graph: Graph) -> set[str]:
    """Parameters every op reads in its stored dtype (rank >= 2): those that may stay quantized,
    as the quantize pass chooses them (norms, biases and routers are read in float)."""
    ok: dict[str, bool] = {}
    for node in graph.nodes:
        opdef = get_op(node.op)
        slots = {opdef.slot(name) for name in opdef.stored_dtype}
        for i, v in enumerate(node.inputs):
            if v is not None and v.param is not None:
                ok[v.param] = ok.get(v.param, True) and i in slots and v.type.rank >= 2
    return {name for name, yes in ok.items() if yes}


def import_gguf(
    path: str | os.PathLike[str], *, dequantize: bool = False, dtype: str = "f32"
) -> Imported:
    """The graph of GGUF file `path`, its weights read from the file on access."""
    if dtype not in DEQUANTIZE_DTYPES:
        raise ConfigError("dequantized dtype", expected=" | ".join(DEQUANTIZE_DTYPES), got=dtype)
    f = open_gguf(path)
    where = str(f.path)
    arch = row(f.architecture, where)
    declared = Meta(f.meta, arch.name, where).int("block_count")
    norm = gguf_name(0, "attn_norm", "weight").split(".", 2)[2]  # blk.{i}.<this>
    held = len({n for n in f.tensors if n.startswith("blk.") and n.split(".", 2)[2] == norm})
    if held != declared:  # before anything loops over blocks: 10**9 would run forever
        raise ConfigError(
            f"states {declared} blocks, but holds attn_norm tensors for {held} of them",
            where=where,
        )
    tensors = _layout(f, arch, declared)
    dims, roles = _dims(tensors, arch, where)
    if dims.rope_freqs:  # read into the rotary's scaling: no parameter of its own
        tensors = {n: t for n, t in tensors.items() if n != ROPE_FREQS}
    ids = token_ids(f.meta, dims.vocab)
    name = f.meta.get("general.name")
    name = name if isinstance(name, str) and name else f.path.stem
    config = model_config(
        f.architecture, f.meta, name, dims, where, {k: v for k, v in ids.items() if v is not None}
    )
    from irgraph.model_zoo.builder import build_graph

    graph = build_graph(config, weights=None)
    interleaved = config.rotary is not None and config.rotary.interleaved
    orders = (
        rope_row_orders(config.heads, config.n_kv_heads, config.dim_per_head)
        if arch.rope == "norm" and not interleaved
        else {}
    )
    quantizable = _stored_dtype_params(graph)
    p = plan(
        tensors,
        config.layers,
        orders.get,
        quantizable.__contains__,
        dequantize=dequantize,
        dtype=DEQUANTIZE_DTYPES[dtype],
        where=where,
        overrides=roles,
    )
    if p.refused:
        raise ConfigError(
            "tensors whose GGML type the IR has no exact form for; pass --dequantize to store "
            "them dequantized (f32, or f16 with --dtype f16)",
            got=", ".join(p.refused[:4])
            + (f", ... ({len(p.refused)} in all)" if len(p.refused) > 4 else ""),
            where=where,
        )
    _check_coverage(graph, p.params, where)
    types = {
        n: TensorType(q.quant.storage, q.shape, q.quant)
        if q.quant is not None
        else TensorType(q.dtype, q.shape)
        for n, q in p.params.items()
    }
    graph = retype_params(graph, types)
    graph.weights = GgufWeights(p.params)
    graph.name = name
    graph.meta.update(ids)
    graph.verify()
    return Imported(graph, vocabulary(f.meta), p.dequantized())


def _check_coverage(graph: Graph, params: dict[str, Param], where: str) -> None:
    missing = sorted(set(graph.params) - set(params))
    unused = sorted(set(params) - set(graph.params))
    if missing or unused:
        parts = []
        if missing:
            parts.append(f"no GGUF tensor for {', '.join(missing[:6])}")
        if unused:
            names = [params[n].tensor.name for n in unused[:6]]
            parts.append(f"GGUF tensors the model does not use: {', '.join(names)}")
        raise ConfigError("; ".join(parts), where=where)
    for n, v in graph.params.items():
        if tuple(params[n].shape) != tuple(v.type.shape):
            raise ConfigError(
                f"tensor {params[n].tensor.name!r} (for {n!r}) has the wrong shape",
                expected=list(v.type.shape),
                got=list(params[n].shape),
                where=where,
            )


def import_to_dir(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    dequantize: bool = False,
    dtype: str = "f32",
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> tuple[Path, Imported]:
    """Import `path` and save it as the graph folder `out` (atomic), with a rebuilt
    tokenizer.json where the file has one (`Imported.vocabulary.note` says what was done)."""
    check_output(out, [path], force=overwrite, force_name="overwrite=True")
    imported = import_gguf(path, dequantize=dequantize, dtype=dtype)
    with tempfile.TemporaryDirectory() as folder:
        extra = {}
        if imported.vocabulary.json is not None:
            tokenizer = Path(folder) / TOKENIZER_FILE
            tokenizer.write_text(imported.vocabulary.json, encoding="utf-8")
            vocab = int(imported.graph.params["embed.weight"].type.shape[0])  # type: ignore[arg-type]
            check_tokenizer(tokenizer, vocab)
            extra[TOKENIZER_FILE] = tokenizer
        target = save(
            imported.graph,
            out,
            extra_files=extra,
            overwrite=overwrite,
            inputs=[path],
            progress=progress,
        )
    return target, imported


__all__ = ["Imported", "import_gguf", "import_to_dir"]
