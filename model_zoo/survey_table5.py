"""The survey's Table 5 ("Architecture details of LLMs", Naveed et al.), row for row.

The rows are the cleaned transcription in the project's survey_table5.md (the
Korean translation's table is garbled by extraction). Zoo entries take their
`survey` record from here so the survey's claims live in one place, verbatim;
"—" (no value given) becomes "".
"""

from __future__ import annotations

import re

from irgraph.errors import ConfigError
from irgraph.model_zoo.config import Survey

# Columns: model (size) | type | objective | attention | vocab | tokenizer | norm | PE |
#          activation | bias | nL | nH | HS
TABLE5 = """\
| T5 (11B) | Enc-Dec | span corruption | standard | 32k | SentencePiece | pre-RMS | relative | ReLU | no | 24 | 128 | 1024 |
| GPT-3 (175B) | causal-dec | next token | dense+sparse | — | — | layer | learned | GeLU | yes | 96 | 96 | 12288 |
| mT5 (13B) | Enc-Dec | span corruption | standard | 250k | SentencePiece | pre-RMS | relative | ReLU | — | — | — | — |
| PanGu-α (200B) | causal-dec | next token | standard | 40k | BPE | layer | — | — | — | 64 | 128 | 16384 |
| CPM-2 (198B) | Enc-Dec | span corruption | standard | 250k | SentencePiece | pre-RMS | relative | ReLU | — | 24 | 64 | — |
| Codex (12B) | causal-dec | next token | standard | — | BPE+ | pre-layer | learned | GeLU | — | 96 | 96 | 12288 |
| ERNIE 3.0 (10B) | causal-dec | next token | standard | — | WordPiece | post-layer | relative | GeLU | — | 48 | 64 | 4096 |
| Jurassic-1 (178B) | causal-dec | next token | standard | 256k | SentencePiece | pre-layer | learned | GeLU | yes | 76 | 96 | 13824 |
| HyperCLOVA (82B) | causal-dec | next token | dense+sparse | — | BPE* | pre-layer | learned | GeLU | — | 64 | 80 | 10240 |
| Yuan 1.0 (245B) | causal-dec | next token | standard | — | — | — | — | — | — | 76 | — | 16384 |
| Gopher (280B) | causal-dec | next token | standard | 32k | SentencePiece | pre-RMS | relative | GeLU | yes | 80 | 128 | 16384 |
| ERNIE 3.0 Titan (260B) | causal-dec | next token | standard | — | WordPiece | post-layer | relative | GeLU | — | 48 | 192 | 12288 |
| GPT-NeoX-20B | causal-dec | next token | parallel | 50k | BPE | layer | rotary | GeLU | yes | 44 | 64 | — |
| OPT (175B) | causal-dec | next token | standard | — | BPE | — | — | ReLU | yes | 96 | 96 | — |
| BLOOM (176B) | causal-dec | next token | standard | 250k | BPE | layer | ALiBi | GeLU | yes | 70 | 112 | 14336 |
| Galactica (120B) | causal-dec | next token | standard | 50k | BPE+custom | layer | learned | GeLU | no | 96 | 80 | 10240 |
| GLaM (1.2T) | MoE-dec | next token | standard | 256k | SentencePiece | layer | relative | GeLU | yes | 64 | 128 | 32768 |
| LaMDA (137B) | causal-dec | next token | standard | 32k | BPE | layer | relative | GeLU | — | 64 | 128 | 8192 |
| MT-NLG (530B) | causal-dec | next token | standard | 50k | BPE | pre-layer | learned | GeLU | yes | 105 | 128 | 20480 |
| AlphaCode (41B) | Enc-Dec | next token | multi-query | 8k | SentencePiece | — | — | — | — | 64 | 128 | 6144 |
| Chinchilla (70B) | causal-dec | next token | standard | 32k | SentencePiece-NFKC | pre-RMS | relative | GeLU | yes | 80 | 64 | 8192 |
| PaLM (540B) | causal-dec | next token | parallel + multi-query | 256k | SentencePiece | layer | RoPE | SwiGLU | no | 118 | 48 | 18432 |
| AlexaTM (20B) | Enc-Dec | denoising | standard | 150k | SentencePiece | pre-layer | learned | GeLU | yes | 78 | 32 | 4096 |
| Sparrow (70B) | causal-dec | pref. & rule RM | — | 32k | SentencePiece-NFKC | pre-RMS | relative | GeLU | yes | 16* | 64 | 8192 |
| U-PaLM (540B) | non-causal-dec | MoD | parallel + multi-query | 256k | SentencePiece | layer | RoPE | SwiGLU | no | 118 | 48 | 18432 |
| UL2 (20B) | Enc-Dec | MoD | standard | 32k | SentencePiece | — | — | — | — | 64 | 16 | 4096 |
| GLM (130B) | non-causal-dec | AR blank infilling | standard | 130k | SentencePiece | DeepNorm | RoPE | GeGLU | yes | 70 | 96 | 12288 |
| CodeGen (16B) | causal-dec | next token | parallel | — | BPE | layer | RoPE | — | — | 34 | 24 | — |
| LLaMA (65B) | causal-dec | next token | standard | 32k | BPE | pre-RMS | RoPE | SwiGLU | — | 80 | 64 | 8192 |
| PanGu-Σ (1085B) | causal-dec | next token | standard | — | BPE | fused layer | — | FastGeLU | — | 40 | 40 | 5120 |
| BloombergGPT (50B) | causal-dec | next token | standard | 131k | Unigram | layer | ALiBi | GeLU | yes | 70 | 40 | 7680 |
| Xuan Yuan 2.0 (176B) | causal-dec | next token | self | 250k | BPE | layer | ALiBi | GeLU | yes | 70 | 112 | 14336 |
| CodeT5+ (16B) | Enc-Dec | SC+NT+Cont.+Match | standard | — | code-specific | — | — | — | — | — | — | — |
| StarCoder (15.5B) | causal-dec | FIM | multi-query | 49k | BPE | — | learned | — | — | 40 | 48 | 6144 |
| LLaMA-2 (70B) | causal-dec | next token | grouped-query | 32k | BPE | pre-RMS | RoPE | SwiGLU | — | — | — | — |
| PaLM-2 | — | MoD | parallel | — | — | — | — | — | — | — | — | — |
| LLaMA-3.1 (405B) | causal-dec | next token | grouped-query | 128k | BPE | pre-RMS | RoPE | SwiGLU | — | 126 | 128 | 16384 |
| Nemotron-4 (340B) | causal-dec | next token | standard | 256k | SentencePiece | — | RoPE | ReLU | no | 96 | 96 | 18432 |
| DeepSeek (67B) | causal-dec | next token | grouped-query | 100k | BBPE | pre-RMS | RoPE | SwiGLU | — | 95 | 64 | 8192 |
| DeepSeek-v2 (67B†) | MoE-dec | next token | multi-head latent | 100k | BBPE | pre-RMS | RoPE | SwiGLU | — | 60 | 128 | 5120 |
"""  # noqa: E501 (one table row per line, verbatim)

_UNITS = {"M": 10**6, "B": 10**9, "T": 10**12}


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in TABLE5.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = ["" if c == "—" else c for c in cells]
    return rows


ROWS = _rows()


def survey(model: str) -> Survey:
    """The Survey record of the row whose first cell is `model`, e.g. "T5 (11B)"."""
    if model not in ROWS:
        raise ConfigError(
            "no such Table 5 row", expected=", ".join(ROWS), got=model, where="survey_table5"
        )
    first, *cells = ROWS[model]
    # the size: in parentheses ("T5 (11B)"), part of the name ("GPT-NeoX-20B") or absent ("PaLM-2")
    size = re.search(r"\((.+)\)|-(\d+(?:\.\d+)?[MBT])$", first)
    return Survey(next(g for g in size.groups() if g) if size else "", *cells)


def survey_params(size: str) -> int:
    """The survey's size figure as an int: "1.2T" -> 1_200_000_000_000, "67B†" -> 67e9, "" -> 0."""
    size = size.rstrip("†*")
    if not size:
        return 0
    return round(float(size[:-1]) * _UNITS[size[-1]])


def cite(citation: str, *fields: str) -> dict[str, str]:
    """{field: citation} for each field: entries build `sources` from a few of these."""
    return dict.fromkeys(fields, citation)
