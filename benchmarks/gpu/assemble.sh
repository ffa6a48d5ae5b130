#!/bin/bash
# Build the GPU check's payload into .gpu/ (repo root, git-ignored); run it on the device with
# `bash .gpu/run.sh`. Build products are cached in .cache/gpu/ and reused on reruns.
#   bash benchmarks/gpu/assemble.sh            (DRY_RUN=1: print the steps only)
# Env: PY (the repo's .venv python), CUDA_ARCH (90), MODELS (file of zoo names, models.txt),
#      CUDA_HOME (/usr/local/cuda: libcudart.so.13),
#      LIMIT_KB (54700: the whole payload; the carry limit is 64 MiB), SKIP_BIG=1 (no 125M LLaMA).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
W="$ROOT/.cache/gpu" D="$ROOT/.gpu"
LIMIT_KB="${LIMIT_KB:-54700}"
x() { echo "+ $*"; [ -n "${DRY_RUN:-}" ] || "$@"; }
cd "$ROOT"
mkdir -p "$W/stub" "$W/wheels" "$W/whl" "$W/art"

# 1. the stub libcuda.so.1 (lets TVM's CUDA runtime load here, where there is no driver)
[ -f "$W/stub/libcuda.so.1" ] || x gcc -shared -fPIC -o "$W/stub/libcuda.so.1" "$HERE/cuda_stub.c"

# 2. runtime-only cp312 TVM wheels (the device's python is 3.12; it has no compiler to install)
if ! ls "$W"/whl/*.whl >/dev/null 2>&1; then
  x "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 -d "$W/wheels" apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.15.post2
  for w in "$W"/wheels/*.whl; do [ -e "$w" ] && x "$PY" "$HERE/repack_wheel.py" "$w" "$W/whl/$(basename "$w")"; done
fi

# 3. the zoo twins: tvm-cuda artifact + interpreter reference logits
build() { LD_LIBRARY_PATH="$W/stub" x "$PY" "$HERE/build_cuda.py" "$@"; }
for n in $(cat "${MODELS:-$HERE/models.txt}"); do
  [ -f "$W/art/$n/model.so" ] || build "$n" "$W/art/$n" || { echo "build failed: $n"; continue; }
  [ -f "$W/art/$n/ref.npz" ] || x "$PY" "$HERE/make_refs.py" "$W/art/$n"
done

# 4. the ~125M LLaMA of benchmarks/decode.py (its weights are regenerated on the device)
B="$W/big/llama125m"
if [ "${SKIP_BIG:-0}" != 1 ] && [ ! -f "$B/hashes.json" ]; then
  x "$PY" -c "import sys; from pathlib import Path; from benchmarks.decode import FULL, make_checkpoint
make_checkpoint(Path(sys.argv[1]), FULL)" "$W/big/hf"
  build "$W/big/hf" "$B"
  x "$PY" "$HERE/prep_big.py" "$B" "$W/big/hf"
fi

# 5. the payload: scripts, wheels, libcudart, irgraph's source (for the importer), artifacts
x rm -rf "$D"
x mkdir -p "$D/art" "$D/lib" "$D/irgraph_src/benchmarks"
x cp "$HERE"/payload/{run.sh,gpu_check.py,big_llama.py} "$D/"
x cp -r "$W/whl" "$D/"
x cp -L "${CUDA_HOME:-/usr/local/cuda}/lib64/libcudart.so.13" "$D/lib/"
x cp -r irgraph model_zoo passes "$D/irgraph_src/"
x cp benchmarks/decode.py "$D/irgraph_src/benchmarks/"
[ -n "${DRY_RUN:-}" ] || git rev-parse --short HEAD > "$D/irgraph_src/COMMIT"
[ -n "${DRY_RUN:-}" ] || find "$D" -name __pycache__ -prune -exec rm -rf {} +
if [ "${SKIP_BIG:-0}" != 1 ]; then
  x mkdir -p "$D/big/llama125m" && x cp "$B"/{model.so,manifest.json,hashes.json} "$D/big/llama125m/"
fi
[ -n "${DRY_RUN:-}" ] && { echo "(dry run: artifacts not copied)"; exit 0; }
: > "$D/art/order.txt"
for n in $(cat "${MODELS:-$HERE/models.txt}"); do
  a="$W/art/$n" files=(manifest.json model.so weights.safetensors ref.npz)
  [ -f "$a/ref.npz" ] && [ -f "$a/model.so" ] || continue
  add=$(cd "$a" && du -sk --apparent-size "${files[@]}" | awk '{s += $1} END {print s}')
  have=$(du -sk --apparent-size "$D" | cut -f1)
  if [ $((have + add)) -gt "$LIMIT_KB" ]; then echo "size limit: $n left out"; continue; fi
  mkdir -p "$D/art/$n" && (cd "$a" && cp "${files[@]}" "$D/art/$n/")
  echo "$n" >> "$D/art/order.txt"
done
du -sh "$D"; echo "$(wc -l < "$D/art/order.txt") zoo models; run: bash .gpu/run.sh"
