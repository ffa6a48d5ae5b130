"""Quantized Hugging Face checkpoints: `quantization_config` -> the IR's quantized weights.

Each linear a tool quantized is stored as a few tensors under the module's name; this module
reads them into the IR's form (`irgraph/quant.py`: signed values, w = (q - z) * s, groups of
consecutive input columns) wherever that form is the same function, and refuses by name where
it is not:

  gptq               (GPTQModel / AutoGPTQ) qweight int32 [in*b/32, out] packed along the input,
                     qzeros int32 [groups, out*b/32], scales [groups, out], g_idx [in]; 3, 4 and
                     8 bits; zeros stored minus one ("gptq", v1) or as they are ("gptq_v2");
                     values and zeros unsigned, shifted by 2^(b-1) into the IR's signed range.
                     sym (every zero 2^(b-1)) -> `sym`; else `asym`. A v1 zero stored as 2^b - 1
                     (zero 2^b, the format's wrap) has no IR form: refused.
  awq                (AutoAWQ, version gemm) qweight int32 [in, out/8], AWQ's nibble order
                     (0 2 4 6 1 3 5 7), qzeros [groups, out/8], scales [groups, out]: 4-bit asym.
  compressed-tensors (llm-compressor) `pack-quantized`: weight_packed int32 [out, in*b/32],
                     values + 2^(b-1) from bit 0 up (3, 4 or 8 bits); weight_scale
                     [out, groups]; asymmetric
                     zero points packed along the output; `int-quantized` / `naive-quantized`:
                     int8 weight [out, in]. Weight-only int4/int8, group or channel strategy.
                     Dynamic per-token int8 activations (W8A8) are refused: compressed-tensors
                     scales a token by max|x| / 127.5, irgraph's i8_token by max|x| / 127.

Packing: both GPTQ and compressed-tensors pack b-bit values as one little-endian bit stream
(value i at bits [i*b, (i+1)*b) of the words in order), so 3-bit values straddle words: GPTQ
packs 32 values into 3 words (GPTQModel's PackableQuantLinear.pack), compressed-tensors fills
ceil(n*3/32) words (pack_to_int32). Either way the values are exact, and 3-bit weights are the
IR's 3-bit form (stored in i4). AWQ GEMM packs 4 bits only (AutoAWQ raises on others).
GPTQ v1 stores zeros minus one; for 3 bits GPTQModel does that word by word (it subtracts the
constants GPTQ3_V1_OFFSETS from the v2 words, which is not one off each value: the first and
third words' constants are swapped) and adds them back on load, so its files are read the same
way. A 3-bit v1 file from another quantizer is refused: no such file was available to check.

Act order: a `g_idx` that is not i // group (GPTQ desc_act) puts columns of one group apart.
The IR's groups are consecutive columns, so such a weight is the same function only with its
input channels permuted. Where the input comes from rows irgraph can permute exactly (the down
projection reads glu(gate, up): permute gate's and up's rows and biases) the permutation is
folded in; anywhere else it is refused by name, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from irgraph.dtypes import DType
from irgraph.errors import ConfigError
from irgraph.quant import SCALES, ZEROS, QuantSpec, pack
from irgraph.weights import WeightStore

METHODS = ("gptq", "awq", "compressed-tensors")
AWQ_ORDER = np.array([0, 2, 4, 6, 1, 3, 5, 7])  # nibble k of a word holds column 8c + AWQ_ORDER[k]
CT_FORMATS = ("pack-quantized", "int-quantized", "naive-quantized")
# GPTQModel's gptq v1 <-> v2 for 3-bit qzeros (utils/model.py): per word of each 3, mod 2^32
GPTQ3_V1_OFFSETS = np.array([0x24924924, 0x92492492, 0x49249249], np.uint32)


@dataclass(frozen=True)
class Scheme:
    method: str
    bits: int
    group: int  # 0 = per output channel
    sym: bool
    v1_zeros: bool = False  # GPTQ "gptq" checkpoint_format: zeros stored minus one
    word_offsets: bool = False  # 3-bit v1 from GPTQModel: minus one word by word
    suffixes: tuple[str, ...] = ()  # the tensors of one quantized module


@dataclass
class QuantLinear:
    """One quantized linear in the IR's form: spec, logical [out, in], stored arrays, order."""

    spec: QuantSpec
    shape: tuple[int, int]
    arrays: Callable[[], dict[str, np.ndarray]]  # '' / .scales / .zero_points
    perm: np.ndarray | None  # input channel order the stored columns are in (None = as is)
    origin: str


def _fail(message: str, where: str, **kw: Any) -> ConfigError:
    return ConfigError(message, where=f"{where}: quantization_config", **kw)


def read_scheme(config: dict[str, Any], where: str) -> Scheme | None:
    """The checkpoint's scheme (None if it is not quantized); unknown schemes refused by name."""
    q = config.get("quantization_config") if isinstance(config, dict) else None
    if q is None:  # (a config that is no object is refused by the translator)
        return None
    if not isinstance(q, dict):
        raise _fail("must be an object", where, got=repr(q)[:80])
    method = q.get("quant_method")
    if method == "gptq":
        return _gptq_scheme(q, where)
    if method == "awq":
        return _awq_scheme(q, where)
    if method == "compressed-tensors":
        return _ct_scheme(q, where)
    raise _fail("unsupported quant_method", where, expected=" | ".join(METHODS), got=repr(method))


def _bits(q: dict[str, Any], key: str, where: str) -> int:
    bits = q.get(key)
    if bits not in (3, 4, 8):
        raise _fail(f"{key}: irgraph imports 3-, 4- and 8-bit weights", where, got=repr(bits))
    return int(bits)


def _gptq_scheme(q: dict[str, Any], where: str) -> Scheme:
    fmt = q.get("checkpoint_format", q.get("format", "gptq"))
    if fmt not in ("gptq", "gptq_v2"):
        raise _fail("GPTQ checkpoint_format", where, expected="gptq | gptq_v2", got=repr(fmt))
    group = q.get("group_size", 128)
    if not isinstance(group, int) or group == 0 or group < -1:
        raise _fail("GPTQ group_size", where, expected="-1 or a positive size", got=repr(group))
    bits = _bits(q, "bits", where)
    meta: dict[str, Any] = q["meta"] if isinstance(q.get("meta"), dict) else {}
    by_gptqmodel = any(str(t).startswith("gptqmodel") for t in meta.get("quantizer") or [])
    if bits == 3 and fmt == "gptq" and not by_gptqmodel:
        raise _fail(
            "3-bit gptq v1 zeros are read as GPTQModel stores them; this file names another "
            "quantizer (save it as gptq_v2, or use GPTQModel)",
            where,
            got=repr(meta.get("quantizer")),
        )
    return Scheme(
        "gptq",
        bits,
        max(group, 0),
        bool(q.get("sym", True)),
        v1_zeros=fmt == "gptq",
        word_offsets=bits == 3 and fmt == "gptq",
        suffixes=("qweight", "qzeros", "scales", "g_idx"),
    )


def _awq_scheme(q: dict[str, Any], where: str) -> Scheme:
    version = str(q.get("version", "gemm")).lower()
    if version != "gemm":
        raise _fail("AWQ packing", where, expected="gemm", got=repr(version))
    if q.get("zero_point", True) is not True:
        raise _fail("AWQ without zero points", where, got="zero_point=false")
    bits = _bits(q, "bits" if "bits" in q else "w_bit", where)
    if bits != 4:
        raise _fail("AWQ GEMM packs 4-bit values", where, got=bits)
    group = q.get("group_size", q.get("q_group_size", 128))
    if not isinstance(group, int) or group < 1:
        raise _fail("AWQ group_size", where, expected="a positive size", got=repr(group))
    return Scheme("awq", 4, group, False, suffixes=("qweight", "qzeros", "scales"))


def _ct_scheme(q: dict[str, Any], where: str) -> Scheme:
    for key in ("sparsity_config", "transform_config", "kv_cache_scheme"):
        if q.get(key):
            raise _fail(f"compressed-tensors {key} is not imported", where, got=repr(q[key])[:80])
    groups = q.get("config_groups") or {}
    if len(groups) != 1:
        raise _fail("one config group expected", where, got=sorted(groups))
    ((name, group),) = groups.items()
    fmt = group.get("format") or q.get("format")
    if fmt not in CT_FORMATS:
        raise _fail("compressed-tensors format", where, expected=" | ".join(CT_FORMATS), got=fmt)
    acts = group.get("input_activations")
    if acts is not None:
        raise _fail(
            f"config group {name!r} quantizes input activations (W8A8): compressed-tensors scales "
            "a token by max|x| / 127.5, irgraph's per-token int8 by max|x| / 127, another "
            "function; only weight-only schemes are imported",
            where,
            got=f"strategy={acts.get('strategy')}, dynamic={acts.get('dynamic')}",
        )
    w = group.get("weights") or {}
    if w.get("type") != "int" or w.get("dynamic"):
        raise _fail("compressed-tensors weights", where, expected="static int", got=repr(w)[:120])
    strategy = w.get("strategy")
    if strategy not in ("group", "channel"):
        raise _fail("weight strategy", where, expected="group | channel", got=repr(strategy))
    bits = _bits(w, "num_bits", where)
    if fmt != "pack-quantized" and bits != 8:
        raise _fail(f"{fmt} holds int8 weights", where, got=bits)
    suffixes = ("weight_packed",) if fmt == "pack-quantized" else ("weight",)
    return Scheme(
        "compressed-tensors",
        bits,
        int(w["group_size"]) if strategy == "group" else 0,
        bool(w.get("symmetric", True)),
        suffixes=(*suffixes, "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx"),
    )


# -- unpacking ---------------------------------------------------------------------------------


def _unpack_along(words: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Unsigned values of int32 words along `axis`: value i at bits [i*b, (i+1)*b) of the words
    read as one little-endian stream (for b dividing 32: value k of a word at [k*b, (k+1)*b)).
    A stream of W words holds floor(32 W / b) values; callers cut off the padding."""
    if 32 % bits:
        return _unpack_stream(words, bits, axis)
    u = np.asarray(words).astype(np.uint32)
    per = 32 // bits
    shifts = (np.arange(per, dtype=np.uint32) * bits).reshape(
        [per if d == axis + 1 else 1 for d in range(u.ndim + 1)]
    )
    vals = (np.expand_dims(u, axis + 1) >> shifts) & np.uint32((1 << bits) - 1)
    shape = list(u.shape)
    shape[axis] *= per
    return vals.reshape(shape).astype(np.int32)


def _unpack_stream(words: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """`_unpack_along` for widths that straddle words (3 bits): through the stream's bits."""
    u = np.ascontiguousarray(np.moveaxis(np.asarray(words).astype("<u4"), axis, -1))
    stream = np.unpackbits(u.view(np.uint8), axis=-1, bitorder="little")  # [..., 32 W]
    count = stream.shape[-1] // bits
    digits = stream[..., : count * bits].reshape(*u.shape[:-1], count, bits).astype(np.int32)
    vals = (digits << np.arange(bits, dtype=np.int32)).sum(-1, dtype=np.int32)
    return np.moveaxis(vals, -1, axis)


def _spec(scheme: Scheme, sym: bool, scales: np.ndarray) -> QuantSpec:
    dtype = DType.f16 if scales.dtype == np.float16 else DType.f32  # bf16 widens exactly
    return QuantSpec(scheme.bits, scheme.group, sym, dtype)


def _ir_arrays(
    q: np.ndarray, z: np.ndarray | None, s: np.ndarray, spec: QuantSpec
) -> dict[str, np.ndarray]:
    """Stored arrays of signed q [out, in] (in whole groups), zeros and scales [out, groups]."""
    kp = spec.padded(q.shape[1])
    if kp > q.shape[1]:
        fill = np.zeros((q.shape[0], kp - q.shape[1]), np.int8) if z is None else z[:, -1:]
        q = np.concatenate([q, np.broadcast_to(fill, (q.shape[0], kp - q.shape[1]))], axis=1)
    out = {"": pack(q.astype(np.int8), spec), SCALES: s.astype(spec.scale_dtype.numpy)}
    if z is not None:
        out[ZEROS] = z.astype(np.int8)
    return out


def _check_groups(shape: tuple[int, ...], want: tuple[int, int], what: str, where: str) -> None:
    if tuple(shape) != want:
        raise ConfigError(
            f"{what} does not fit the weight and its group_size",
            expected=list(want),
            got=list(shape),
            where=where,
        )


def quant_linear(scheme: Scheme, store: WeightStore, prefix: str, where: str) -> QuantLinear:
    """The IR form of the quantized module `prefix` (shapes checked now, arrays read lazily)."""
    at = f"{where}: {prefix}"
    b, half = scheme.bits, 1 << (scheme.bits - 1)

    def words(values: int) -> int:  # int32 words that hold `values` b-bit values
        return -(-values * b // 32)

    get = store.__getitem__

    def shape_of(name: str) -> tuple[int, ...]:
        return tuple(store.shape_dtype(f"{prefix}.{name}")[0])

    if scheme.method in ("gptq", "awq"):
        rows, cols = shape_of("qweight")
        k, n = (rows * 32 // b, cols) if scheme.method == "gptq" else (rows, cols * 32 // b)
        g = scheme.group or k
        blocks = -(-k // g)
        _check_groups(shape_of("scales"), (blocks, n), f"{prefix}.scales", at)
        _check_groups(shape_of("qzeros"), (blocks, words(n)), f"{prefix}.qzeros", at)
        has_gidx = f"{prefix}.g_idx" in store
        if has_gidx:
            _check_groups(shape_of("g_idx"), (k,), f"{prefix}.g_idx", at)  # type: ignore[arg-type]
        perm = None
        if has_gidx:
            perm = _act_order(np.asarray(get(f"{prefix}.g_idx")), g, k, at)
        scales_dtype = np.dtype(store.shape_dtype(f"{prefix}.scales")[1])
        spec = QuantSpec(
            b, scheme.group, scheme.sym, DType.f16 if scales_dtype == np.float16 else DType.f32
        )

        def load() -> dict[str, np.ndarray]:
            s = np.asarray(get(f"{prefix}.scales")).astype(np.float32).T  # [out, groups]
            if scheme.method == "gptq":
                qv = _unpack_along(get(f"{prefix}.qweight"), b, 0)[:k].T  # [out, in]
                words_z = np.asarray(get(f"{prefix}.qzeros"))
                if scheme.word_offsets:  # GPTQModel's v1 -> v2, word by word
                    offsets = np.resize(GPTQ3_V1_OFFSETS, words_z.shape[1])
                    words_z = words_z.view(np.uint32) + offsets  # wraps mod 2^32, as int32 does
                zv = _unpack_along(words_z, b, 1)[:, :n].T  # [out, groups]
                zv = zv + 1 if scheme.v1_zeros and not scheme.word_offsets else zv
            else:
                inv = np.argsort(AWQ_ORDER)
                qv = _unpack_along(get(f"{prefix}.qweight"), 4, 1)
                qv = qv.reshape(k, -1, 8)[:, :, inv].reshape(k, n).T
                zv = _unpack_along(get(f"{prefix}.qzeros"), 4, 1)
                zv = zv.reshape(blocks, -1, 8)[:, :, inv].reshape(blocks, n).T
            if perm is not None:
                qv = qv[:, perm]
            z = zv - half
            if scheme.sym:
                if not np.all(z == 0):
                    raise ConfigError(
                        "sym=true, but zero points other than 2^(bits-1) are stored",
                        where=at,
                    )
                return _ir_arrays(qv - half, None, s, spec)
            if z.max() > half - 1:
                raise ConfigError(
                    f"zero point {int(z.max()) + half} has no {b}-bit form (GPTQ v1's stored "
                    f"zero {(1 << b) - 1} wraps to {1 << b})",
                    where=at,
                )
            return _ir_arrays(qv - half, z, s, spec)

        return QuantLinear(spec, (n, k), load, perm, f"{prefix}.qweight")

    # compressed-tensors
    packed = f"{prefix}.weight_packed" in store
    scale_shape = shape_of("weight_scale")
    if packed:
        k = int(np.asarray(get(f"{prefix}.weight_shape"))[1])
        n = shape_of("weight_packed")[0]
        _check_groups(shape_of("weight_packed"), (n, words(k)), f"{prefix}.weight_packed", at)
    else:
        n, k = shape_of("weight")
    g = scheme.group or k
    blocks = -(-k // g)
    _check_groups(scale_shape, (n, blocks), f"{prefix}.weight_scale", at)
    if not scheme.sym:
        _check_groups(shape_of("weight_zero_point"), (words(n), blocks), "zero point", at)
    perm = None
    if f"{prefix}.weight_g_idx" in store:
        perm = _act_order(np.asarray(get(f"{prefix}.weight_g_idx")), g, k, at)
    scales_dtype = np.dtype(store.shape_dtype(f"{prefix}.weight_scale")[1])
    spec = QuantSpec(
        b, scheme.group, scheme.sym, DType.f16 if scales_dtype == np.float16 else DType.f32
    )

    def load_ct() -> dict[str, np.ndarray]:
        s = np.asarray(get(f"{prefix}.weight_scale")).astype(np.float32)
        if packed:
            qv = _unpack_along(get(f"{prefix}.weight_packed"), b, 1)[:, :k] - half
        else:
            qv = np.asarray(get(f"{prefix}.weight")).astype(np.int32)
        if perm is not None:
            qv = qv[:, perm]
        z = None
        if not scheme.sym:
            z = _unpack_along(get(f"{prefix}.weight_zero_point"), b, 0)[:n] - half
        return _ir_arrays(qv, z, s, spec)

    return QuantLinear(spec, (n, k), load_ct, perm, f"{prefix}.weight_packed")


def _act_order(g_idx: np.ndarray, group: int, k: int, where: str) -> np.ndarray | None:
    """None when g_idx is i // group; else the column order that makes every group consecutive.

    GPTQ's act order assigns group j to the j-th `group` columns in its own order, so each
    group holds exactly `group` columns (the last the rest); sorted stably by group, they
    become the IR's consecutive groups. Any other g_idx has no grouped form: refused.
    """
    g_idx = g_idx.astype(np.int64)
    if np.array_equal(g_idx, np.arange(k) // group):
        return None
    perm = np.argsort(g_idx, kind="stable")
    if not np.array_equal(g_idx[perm], np.arange(k) // group):
        raise ConfigError(
            f"g_idx does not assign {group} columns to each group; no grouped form", where=where
        )
    return perm


__all__ = ["METHODS", "QuantLinear", "Scheme", "quant_linear", "read_scheme"]
