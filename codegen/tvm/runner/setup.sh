#!/usr/bin/env bash
# Set up and build the irgraph native aarch64 runner (irgraph_runner) for tvm-aarch64 artifacts.
#
#   codegen/tvm/runner/setup.sh [OUT_DIR]        # default $IRGRAPH_AARCH64_RUNTIME or ~/.cache/irgraph/aarch64
#
# 1. the cross toolchain and qemu (Debian/Ubuntu, as root; skipped when already on PATH):
#      apt-get update && apt-get install -y gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user
# 2. the aarch64 TVM runtime from PyPI (not installed, only unpacked: libtvm_runtime.so, libtvm_ffi.so
#    and the tvm-ffi headers):
#      pip download --platform manylinux_2_28_aarch64 --only-binary=:all: --no-deps \
#          apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.15.post2
# 3. OUT_DIR/irgraph_runner, linked against those libraries (copied beside it, found through $ORIGIN).
#
# Run an artifact on an x86 machine with:
#   qemu-aarch64 -L /usr/aarch64-linux-gnu OUT_DIR/irgraph_runner ARTIFACT --prompt 1,2,3 --steps 8
# On a board, copy OUT_DIR (runner + two libraries) and the artifact folder; no Python is needed.
# The cross compiler can be overridden with $IRGRAPH_AARCH64_CXX (and $IRGRAPH_AARCH64_SYSROOT).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-${IRGRAPH_AARCH64_RUNTIME:-$HOME/.cache/irgraph/aarch64}}"
TVM_VERSION="0.27.0.post1"
FFI_VERSION="0.1.15.post2"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
CXX="${IRGRAPH_AARCH64_CXX:-aarch64-linux-gnu-g++}"

if ! command -v "$CXX" >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: need $CXX and qemu-aarch64; run as root or install:" >&2
    echo "  apt-get install -y gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user" >&2
    exit 1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user
fi

mkdir -p "$OUT"
if [ ! -f "$OUT/libtvm_runtime.so" ] || [ ! -f "$OUT/libtvm_ffi.so" ] || [ ! -d "$OUT/include" ]; then
  WHEELS="$(mktemp -d)"
  trap 'rm -rf "$WHEELS"' EXIT
  "$PYTHON" -m pip download --quiet --platform manylinux_2_28_aarch64 --python-version 3.11 \
    --only-binary=:all: --no-deps -d "$WHEELS" \
    "apache-tvm==$TVM_VERSION" "apache-tvm-ffi==$FFI_VERSION"
  "$PYTHON" - "$WHEELS" "$OUT" <<'PY'
import pathlib, shutil, sys, zipfile
wheels, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wanted = {"tvm/lib/libtvm_runtime.so": "libtvm_runtime.so", "tvm_ffi/lib/libtvm_ffi.so": "libtvm_ffi.so"}
for wheel in wheels.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name in wanted:
                (out / wanted[name]).write_bytes(z.read(name))
            elif name.startswith("tvm_ffi/include/") and not name.endswith("/"):
                target = out / "include" / name[len("tvm_ffi/include/"):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
missing = [v for v in wanted.values() if not (out / v).is_file()]
if missing:
    sys.exit(f"setup.sh: the wheels lack {missing}")
PY
fi

SYSROOT_OPT=()
if [ -n "${IRGRAPH_AARCH64_SYSROOT:-}" ]; then SYSROOT_OPT=(--sysroot="$IRGRAPH_AARCH64_SYSROOT"); fi
if [ ! -x "$OUT/irgraph_runner" ] || [ "$HERE/irgraph_runner.cc" -nt "$OUT/irgraph_runner" ]; then
  "$CXX" "${SYSROOT_OPT[@]}" -std=c++17 -O2 -I "$OUT/include" "$HERE/irgraph_runner.cc" \
    -o "$OUT/irgraph_runner.tmp" -L "$OUT" -Wl,--no-as-needed -ltvm_runtime -ltvm_ffi -Wl,-rpath,'$ORIGIN'
  mv "$OUT/irgraph_runner.tmp" "$OUT/irgraph_runner"
fi
echo "$OUT/irgraph_runner"
