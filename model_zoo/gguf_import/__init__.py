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
from dataclasses import dataclass, field
from pathlib import Path

from irgraph.dtypes import DType
from irgraph.errors import ConfigError
from irgraph.gguf_names import gguf_name
from irgraph.ir import Graph
from irgraph.model_zoo.gguf_import.config import Dims, model_config, row
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


@dataclass
class Imported:
    graph: Graph
    vocabulary: Vocabulary
    dequantized: dict[str, str] = field(default_factory=dict)  # GGUF tensor -> why


def _dims(f: GgufFile) -> Dims:
    embed = f.tensors.get(gguf_name(None, "embed", "weight"))
    if embed is None:
        raise ConfigError("no token_embd.weight tensor", where=str(f.path))
    up_exps = f.tensors.get(gguf_name(0, "moe.experts.up", "weight"))
    biases = {
        role
        for role in ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate", "mlp.down")
        if gguf_name(0, role, "bias") in f.tensors
    }
    return Dims(
        vocab=int(embed.shape[-1]),  # ggml order: [hidden, vocab]
        expert_ffn=int(up_exps.shape[1]) if up_exps is not None else 0,
        biases=frozenset(biases),
        untied=gguf_name(None, "lm_head", "weight") in f.tensors,
    )


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
    dims = _dims(f)
    ids = token_ids(f.meta, dims.vocab)
    name = f.meta.get("general.name")
    name = name if isinstance(name, str) and name else f.path.stem
    config = model_config(
        f.architecture, f.meta, name, dims, where, {k: v for k, v in ids.items() if v is not None}
    )
    norm = gguf_name(0, "attn_norm", "weight").split(".", 2)[2]  # blk.{i}.<this>
    held = len({n for n in f.tensors if n.startswith("blk.") and n.split(".", 2)[2] == norm})
    if held != config.layers:  # before building: a header stating 10**9 blocks builds forever
        raise ConfigError(
            f"states {config.layers} blocks, but holds attn_norm tensors for {held} of them",
            where=where,
        )
    from irgraph.model_zoo.builder import build_graph

    graph = build_graph(config, weights=None)
    orders = (
        rope_row_orders(config.heads, config.n_kv_heads, config.dim_per_head)
        if arch.rope == "norm"
        else {}
    )
    quantizable = _stored_dtype_params(graph)
    p = plan(
        f.tensors,
        config.layers,
        orders.get,
        quantizable.__contains__,
        dequantize=dequantize,
        dtype=DEQUANTIZE_DTYPES[dtype],
        where=where,
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
