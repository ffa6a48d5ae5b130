#!/bin/bash
# One-shot GPU check of irgraph tvm-cuda artifacts (see gpu_check.py). Run from the repo root:
#   bash .gpu/run.sh            (DEVICE=cpu ART=dir to rehearse on a CPU with tvm-llvm artifacts)
set -u
G="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-/tmp/gpu_out}"; mkdir -p "$OUT"
DEVICE="${DEVICE:-cuda}"; ART="${ART:-$G/art}"; SITE="${SITE:-/tmp/gpu_site}"
echo "== $(date -u +%FT%TZ) $(uname -m) $(python3 --version 2>&1)"
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | head -2
else echo "nvidia-smi unavailable"; fi
nvidia-smi 2>/dev/null | grep -m1 "CUDA Version" || true
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  rm -rf "$SITE"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$G"/whl/*.whl 2>&1 | grep -v "Running pip as" || true
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TVM_USE_RUNTIME_LIB=1 TVM_FFI_DISABLE_TORCH_C_DLPACK=1
# libtvm_runtime_cuda.so needs libcudart.so.13: use the machine's, else the carried copy
if ! ldconfig -p 2>/dev/null | grep -q "libcudart.so.13" && [ ! -e /usr/local/cuda/lib64/libcudart.so.13 ]; then
  export LD_LIBRARY_PATH="$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; echo "using carried libcudart.so.13"
elif [ -e /usr/local/cuda/lib64/libcudart.so.13 ]; then
  export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
python3 -c "import numpy, sys; print('numpy', numpy.__version__)"
T0=$(date +%s)
timeout -k 5 "${CHECK_TIMEOUT:-115}" python3 "$G/gpu_check.py" --art "$ART" --out "$OUT/gpu_results.json" \
  --device "$DEVICE" --budget "${BUDGET:-95}" "$@"
rc=$?
echo "== gpu_check rc=$rc in $(( $(date +%s) - T0 ))s; results in $OUT/gpu_results.json"
# ~125M LLaMA decode timing: irgraph tvm-cuda vs HF eager (weights regenerated and derived here)
rc2=skipped
if [ "${SKIP_BIG:-0}" != 1 ] && [ -d "${BIG:-$G/big/llama125m}" ]; then
  T1=$(date +%s)
  timeout -k 5 "${BIG_TIMEOUT:-105}" python3 "$G/big_llama.py" --art "${BIG:-$G/big/llama125m}" \
    --out "$OUT/gpu_results.json" --device "$DEVICE" --tokens "${BIG_TOKENS:-128}" --repeats "${BIG_REPEATS:-3}"
  rc2=$?
  echo "== big_llama rc=$rc2 in $(( $(date +%s) - T1 ))s"
fi
python3 - "$OUT/gpu_results.json" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
print("zoo:", r.get("summary"), "| llama125m:", json.dumps({k: v for k, v in r.get("llama125m", {}).items()
      if k in ("status", "error", "checkpoint_identical", "derived_identical", "tokens_equal",
               "tokens_same_prefix", "decode_speedup_vs_hf", "prefill_speedup_vs_hf", "wall_s")}))
for k in ("irgraph_tvm", "hf_eager"):
    v = r.get("llama125m", {}).get(k)
    if v: print(f"  {k:12s} decode {v['decode_ms_per_token_median']} ms/tok, prefill {v['prefill_tok_s']} tok/s")
PY
echo "== total $(( $(date +%s) - T0 ))s"
exit $rc
