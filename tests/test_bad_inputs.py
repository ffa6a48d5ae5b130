"""The bad-input corpus: every case, against every verb it applies to, fails cleanly.

Clean means: a non-zero exit (1 or 2, never the internal-error status), exactly one output
line `Error: ...` naming the culprit, no traceback, and nothing created or changed in the
temporary folder the case runs in (the working directory too).

To add a case, drop a file into tests/bad_inputs/<kind>/ (it then replaces the file of that
kind in a good folder and runs against that kind's verbs), or add a `Case` row to CASES.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import irgraph
from irgraph.cli import main
from irgraph.weights import save_safetensors
from tests.helpers.handbuilt import tiny_llama

CORPUS = Path(__file__).parent / "bad_inputs"

# Each verb as the corpus runs it: {src} is the case's input, {tmp} its private folder.
VERBS: dict[str, tuple[str, ...]] = {
    "inspect": ("inspect", "{src}"),
    "run": ("run", "{src}", "--ids", "1,2"),
    "generate": ("generate", "{src}", "--prompt-ids", "1,2", "-n", "2"),
    "generate-text": ("generate", "{src}", "--prompt", "hi", "-n", "2"),
    "compile": ("compile", "{src}", "-o", "{tmp}/out"),
    "opt": ("opt", "{src}", "--passes", "dce", "-o", "{tmp}/out"),
    "explain": ("explain", "canonicalize", "{src}"),
    "train": ("train", "{src}", "--corpus", "{tmp}/corpus.txt", "--steps", "1", "-o", "{tmp}/out"),
    "import-hf": ("import-hf", "{src}", "-o", "{tmp}/out"),
    "import-gguf": ("import-gguf", "{src}/model.gguf", "-o", "{tmp}/out"),
    "zoo-build": ("zoo", "build", "llama", "-o", "{tmp}/out"),
    "zoo-show": ("zoo", "show", "llama", "--no-text"),
}
READ_GRAPH = ("inspect", "run", "generate", "compile", "opt", "explain", "train")
NEED_WEIGHTS = ("run", "generate", "compile", "train")
TAKE_SOURCE = ("compile", "train")  # a folder or a zoo name
OPEN_ARTIFACT = ("run", "generate")
READ_HF = ("import-hf", "compile", "train")


@dataclass(frozen=True)
class Case:
    id: str
    verbs: tuple[str, ...]  # keys of VERBS
    culprit: str  # the error line contains it ({src} and {tmp} are filled in)
    base: str = "graph"  # the folder {src} starts as: graph | artifact | hf | gguf | none
    put: Mapping[str, str | None] = field(default_factory=dict)  # file -> corpus file; None: rm
    args: tuple[str, ...] = ()  # appended to the verb's arguments
    src: str = "{tmp}/src"  # where the input lives (a missing path or zoo name for some cases)


def _files(kind: str) -> list[Path]:
    return sorted((CORPUS / kind).iterdir())


def _file_cases(
    kind: str,
    target: str,
    base: str,
    verbs: tuple[str, ...],
    only: tuple[str, ...] = (),
    culprits: Mapping[str, str] | None = None,
) -> list[Case]:
    """One case per corpus file of `kind` (or those in `only`): it replaces `target` in a good
    `base` folder; the error names `target`, or what `culprits` says for that file."""
    return [
        Case(
            f"{base}/{target}:{kind}/{f.name}",
            verbs,
            (culprits or {}).get(f.name, target),
            base,
            {target: f"{kind}/{f.name}"},
        )
        for f in _files(kind)
        if not only or f.name in only
    ]


JSON_GARBAGE = (
    "not_json.json",
    "a_list.json",
    "not_utf8.json",
    "empty.json",
    "nested_too_deep.json",
)


CASES: list[Case] = [
    *_file_cases("ir", "graph.irg", "graph", READ_GRAPH),
    *_file_cases("safetensors", "weights.safetensors", "graph", READ_GRAPH),
    *_file_cases("hf_config", "config.json", "hf", READ_HF),
    *_file_cases(
        "safetensors",
        "model.safetensors",
        "hf",
        READ_HF,
        culprits={  # a checkpoint of another model: the tensor is named
            "other_model.safetensors": "checkpoint tensor 'unrelated.weight' has no role",
            "wrong_shape.safetensors": "checkpoint tensor 'embed.weight' has no role",
        },
    ),
    *_file_cases("hf_config", "generation_config.json", "hf", ("import-hf",), JSON_GARBAGE),
    *_file_cases("hf_config", "model.safetensors.index.json", "hf", READ_HF, JSON_GARBAGE),
    *_file_cases("tokenizer", "tokenizer.json", "hf", ("import-hf",)),
    *_file_cases("manifest", "manifest.json", "artifact", OPEN_ARTIFACT),
    *_file_cases(
        "gguf",
        "model.gguf",
        "gguf",
        ("import-gguf",),
        culprits={
            "empty.gguf": "model.gguf: empty file",
            "not_gguf.gguf": "model.gguf: not a GGUF file",
            "truncated_header.gguf": "model.gguf: truncated: the header needs",
            "truncated_tensor_data.gguf": "model.gguf: truncated: tensor 'token_embd.weight'",
            "unknown_architecture.gguf": "architecture 'mamba' is not imported",
            "unknown_ggml_type.gguf": "tensor 'token_embd.weight' has an unknown GGML type 99",
        },
    ),
    *_file_cases("tokenizer", "tokenizer.json", "graph", ("generate-text", "train")),
    # missing files: the message names the file that is missing
    Case("no-graph.irg", READ_GRAPH, "graph.irg", put={"graph.irg": None}),
    Case(
        "no-weights",
        NEED_WEIGHTS,
        "weights.safetensors is missing",
        put={"weights.safetensors": None},
    ),
    Case(
        "no-manifest",
        OPEN_ARTIFACT,
        "manifest.json is missing",
        "artifact",
        {"manifest.json": None},
    ),
    Case("no-config.json", ("import-hf",), "config.json", "hf", {"config.json": None}),
    Case("no-hf-weights", READ_HF, "safetensors", "hf", {"model.safetensors": None}),
    Case(
        "missing-path",
        TAKE_SOURCE,
        "{tmp}/no/such/model: does not exist",
        src="{tmp}/no/such/model",
    ),
    Case("missing-relative-path", TAKE_SOURCE, "./nosuch: does not exist", src="./nosuch"),
    Case(
        "unknown-zoo-name", TAKE_SOURCE, "unknown zoo model 'lama'; did you mean llama", src="lama"
    ),
    Case(
        "missing-folder", ("inspect", "run", "opt", "import-hf"), "does not exist", src="{tmp}/nope"
    ),
    Case(
        "a-file-not-a-folder",
        ("inspect", "run", "import-hf"),
        "is a file",
        src="{tmp}/src/graph.irg",
    ),
    # bad CLI values
    *(
        Case(f"ids={ids!r}", ("run",), "--ids", args=("--ids", ids))
        for ids in ("1,,2", "1,2,", ",", "", "1;2", "0x10", "1.0", "64", "-1", "9" * 30, "1 2")
    ),
    *(
        Case(f"prompt-ids={ids!r}", ("generate",), "--prompt-ids", args=("--prompt-ids", ids))
        for ids in ("1,,2", "64", "a")
    ),
    Case("stop-ids=1,,2", ("generate",), "--stop-ids", args=("--stop-ids", "1,,2")),
    *(
        Case(f"{opt}={value}", ("generate",), opt, args=(opt, value))
        for opt, value in [
            ("--temperature", "nan"),
            ("--temperature", "inf"),
            ("--temperature", "-1"),
            ("--seed", "-1"),
            ("--top-k", "-1"),
            ("--top-p", "0"),
            ("--top-p", "nan"),
            ("--top-p", "1.5"),
            ("--max-new-tokens", "-1"),
            ("--max-new-tokens", "0"),
            ("--max-new-tokens", "many"),
        ]
    ),
    Case("context=0", ("inspect",), "--context", args=("--context", "0")),
    Case("context=-5", ("inspect",), "--context", args=("--context", "-5")),
    Case("prefix-len=-1", ("run",), "--prefix-len", args=("--prefix-len", "-1")),
    Case("compile-seed=-1", ("compile",), "--seed", args=("--seed", "-1")),
    Case("zoo-build-seed=-1", ("zoo-build",), "--seed", args=("--seed", "-1")),
    Case("zoo-size", ("zoo-show", "zoo-build"), "--size", args=("--size", "huge")),
    Case("target", ("compile",), "--target", args=("--target", "gguf-9")),
    *(
        Case(f"passes={spec}", ("opt", "compile"), culprit, args=("--passes", spec))
        for spec, culprit in [
            ("no-such-pass", "unknown pass 'no-such-pass'"),
            ("cse(", "unclosed option list of pass cse"),
            ("cse,,dce", "pipeline"),
            ("cse(x=1)", "unknown option 'x' for pass cse"),
            ("merge-lora(alpha=nan)", "option 'alpha' of pass merge-lora"),
            ("merge-lora(alpha=inf)", "option 'alpha' of pass merge-lora"),
            ("constant-fold(max_elements=-1)", "option 'max_elements' of pass constant-fold"),
            ("constant-fold(max_elements=1e999)", "option 'max_elements' of pass constant-fold"),
            ("quantize(bits=5)", "option 'bits' of pass quantize (expected int, one of 3, 4, 8"),
            ("quantize(group=-1)", "option 'group' of pass quantize (expected int, 0 <= group"),
            ("quantize(damp=0.1)", "option(s) damp of pass quantize are not used by method=rtn"),
            ("quantize(method=gptq)", "needs calibration data (--calibration PATH"),
            ("quantize(bits=4),quantize(bits=4)", "is already quantized"),
        ]
    ),
    *(
        Case(f"train{opt}={value}", ("train",), opt, args=(opt, value))
        for opt, value in [
            ("--steps", "0"),
            ("--lr", "nan"),
            ("--lr", "0"),
            ("--batch-size", "0"),
            ("--seq-len", "-1"),
            ("--warmup", "-1"),
            ("--dropout", "1"),
            ("--heldout-fraction", "0"),
            ("--grad-clip", "inf"),
            ("--lora", "-2"),
            ("--lora-alpha", "nan"),
            ("--seed", "-1"),
            ("--eval-tokens", "0"),
        ]
    ),
]

PAIRS = [pytest.param(c, v, id=f"{c.id}-{v}") for c in CASES for v in c.verbs]


# -- the good folders each case starts from ------------------------------------------------

HF_CONFIG = json.loads((CORPUS / "hf_base_config.json").read_text())


def _hf_checkpoint(folder: Path) -> Path:
    """A LLaMA checkpoint as transformers saves it (config.json + model.safetensors)."""
    c = HF_CONFIG
    h, f, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    kv = c["num_key_value_heads"] * c["head_dim"]
    shapes = {
        "model.embed_tokens.weight": (v, h),
        "model.norm.weight": (h,),
        "lm_head.weight": (v, h),
    }
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (h, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, h),
            p + "mlp.gate_proj.weight": (f, h),
            p + "mlp.up_proj.weight": (f, h),
            p + "mlp.down_proj.weight": (h, f),
        }
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    arrays = {k: (0.1 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
    save_safetensors(arrays, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(c))
    return folder


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    graph = irgraph.save(tiny_llama(), root / "graph")
    artifact = root / "artifact"
    result = CliRunner().invoke(main, ["compile", str(graph), "-o", str(artifact)])
    assert result.exit_code == 0, result.output
    folders = {"graph": graph, "artifact": artifact, "hf": _hf_checkpoint(root / "hf")}
    try:  # import-gguf's cases need the gguf package (irgraph[llama]); skipped without it
        from irgraph import model_zoo
        from irgraph.codegen.gguf import compile_graph

        llama = model_zoo.build("llama-2", size="tiny", seed=0)
        folders["gguf"] = compile_graph(llama, root / "gguf")
    except irgraph.errors.ConfigError:
        pass
    return folders


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under root with a hash of its bytes ('dir' for folders)."""
    return {
        str(p.relative_to(root)): "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def _prepare(case: Case, bases: Mapping[str, Path], tmp: Path) -> None:
    (tmp / "corpus.txt").write_text("a small training text. " * 50)
    if case.base == "none":
        return
    if case.base not in bases:
        pytest.skip(f"no {case.base} base here (its package is not installed)")
    src = tmp / "src"
    shutil.copytree(bases[case.base], src)
    for name, corpus_file in case.put.items():
        if corpus_file is None:
            (src / name).unlink()
        else:
            shutil.copyfile(CORPUS / corpus_file, src / name)


@pytest.mark.parametrize("case,verb", PAIRS)
def test_bad_input_fails_cleanly(case: Case, verb: str, bases, tmp_path, monkeypatch):
    tmp = tmp_path / "case"
    tmp.mkdir()
    _prepare(case, bases, tmp)
    monkeypatch.chdir(tmp)
    fill = {"tmp": str(tmp), "src": case.src.format(tmp=tmp)}
    args = [a.format(**fill) for a in VERBS[verb]] + list(case.args)
    before = _snapshot(tmp)
    result = CliRunner().invoke(main, args)
    lines = result.output.splitlines()
    assert result.exit_code in (1, 2), result.output  # 70 would be an internal error
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert case.culprit.format(**fill) in lines[0]
    assert _snapshot(tmp) == before


@pytest.mark.parametrize(
    "base,verb",
    [("graph", "run"), ("artifact", "run"), ("hf", "import-hf"), ("gguf", "import-gguf")],
)
def test_the_good_folders_work(base, verb, bases, tmp_path):
    """Each case breaks one thing in a folder that works, so its error is about that thing."""
    if base not in bases:
        pytest.skip(f"no {base} base here (its package is not installed)")
    args = [a.format(src=bases[base], tmp=tmp_path) for a in VERBS[verb]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


def test_every_corpus_file_is_a_case():
    used = {f for c in CASES for f in c.put.values() if f}
    on_disk = {f"{d.name}/{f.name}" for d in CORPUS.iterdir() if d.is_dir() for f in d.iterdir()}
    assert on_disk == used and len(PAIRS) > 300
