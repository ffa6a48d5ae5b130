#!/bin/sh
# Cross-build irgraph's GGUF runner for aarch64 from the llama.cpp vendored in the pinned
# llama-cpp-python sdist: static libllama + libggml (generic armv8-a, no native tuning), then
# gguf_runner.c linked against them. Runs under qemu-aarch64 -L /usr/aarch64-linux-gnu.
#
#   build.sh SDIST.tar.gz OUT_DIR      -> OUT_DIR/gguf_runner
set -eu
sdist=$1; out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out/src"
tar xzf "$sdist" -C "$out/src" --strip-components=3 --wildcards '*/vendor/llama.cpp/*'
cmake -S "$out/src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
  -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8-a -DGGML_OPENMP=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_CURL=OFF \
  >"$out/cmake.log"
cmake --build "$out/build" --target llama -j "${JOBS:-2}" >"$out/build.log"
libs=$(find "$out/build" -name '*.a' | sort)
aarch64-linux-gnu-g++ -O2 -static -o "$out/gguf_runner" -x c "$here/gguf_runner.c" -x none \
  -I "$out/src/include" -I "$out/src/ggml/include" \
  -Wl,--start-group $libs -Wl,--end-group -lpthread -lm
echo "$out/gguf_runner"
