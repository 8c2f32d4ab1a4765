#!/usr/bin/env bash
# The CUDA toolchain for `cargo build --features cuda` on a machine without a GPU or a
# system CUDA (the recipe of shared/CUDA.md, made repeatable). Idempotent: what is already
# installed is reused.
#
#   scripts/cuda-toolchain.sh install   # toolkit + .so links + libcuda stub (the default)
#   eval "$(scripts/cuda-toolchain.sh env)"   # install if needed, print the exports
#   scripts/cuda-toolchain.sh build     # install if needed, then build the CUDA binaries
#   scripts/cuda-toolchain.sh check     # compile src/model/kernels/kernels.cu with nvcc and
#                                       # NVRTC (what the binary does at run time); no GPU
#
# `build` writes, under $CARGO_TARGET_DIR (default target/cuda, so the CPU build in
# target/debug and target/release is left alone):
#   release/tunelab   the CUDA tunelab binary (stripped)
#   gpu-tests         the tests/gpu.rs test binary (stripped), at a stable path for
#                     scripts/gpu-check.sh on the GPU machine
#   gpu-bundle.tar.xz both, compressed: what a device session carries (under 64 MiB)
#
# Where: ${XDG_CACHE_HOME:-$HOME/.cache}/tunelab/cuda (override with TUNELAB_CUDA_PREFIX).
# The toolkit is pinned to 13.0.x: the GPU machines' driver (580, CUDA 13.0) rejects PTX
# written by a newer nvcc. CUDA_COMPUTE_CAP defaults to 90 (H100/H200, sm_90a).
set -euo pipefail

CUDA_VERSION_PIN="13.0.2"
PREFIX="${TUNELAB_CUDA_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/tunelab/cuda}"
CU="$PREFIX/nvidia/cu13"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"

log() { echo "cuda-toolchain: $*" >&2; }

# The cudarc sources cargo fetched for this project's lock file (the stub declares what
# cudarc's driver bindings link against).
cudarc_dir() {
  local version dir
  version="$(awk '/^name = "cudarc"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock")"
  if [ -z "$version" ]; then
    log "Cargo.lock has no cudarc; run this from the tunelab repository"
    exit 1
  fi
  for attempt in registry fetched; do
    for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$version"; do
      if [ -f "$dir/src/driver/sys/mod.rs" ]; then
        echo "$dir"
        return
      fi
    done
    [ "$attempt" = fetched ] && break
    log "fetching crates (cudarc $version is not in the cargo registry yet)"
    (cd "$ROOT" && cargo fetch --quiet)
  done
  log "cudarc $version not found after cargo fetch"
  exit 1
}

install_toolkit() {
  if [ -x "$CU/bin/nvcc" ] && [ -f "$PREFIX/.tunelab-cuda-$CUDA_VERSION_PIN" ]; then
    return
  fi
  log "installing the CUDA $CUDA_VERSION_PIN toolkit from PyPI into $PREFIX (about 1.5 GB)"
  mkdir -p "$PREFIX"
  python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$PREFIX" \
    "cuda-toolkit[nvcc,crt,nvvm,cudart,cublas,curand,nvrtc,cccl]==$CUDA_VERSION_PIN"
  if [ ! -x "$CU/bin/nvcc" ]; then
    log "no nvcc at $CU/bin/nvcc after pip install; the wheel layout changed?"
    exit 1
  fi
  touch "$PREFIX/.tunelab-cuda-$CUDA_VERSION_PIN"
}

# The wheels ship only versioned sonames; the linker wants lib*.so.
link_libraries() {
  local l
  for l in cublas cublasLt cudart nvrtc; do
    ln -sfn "lib$l.so.13" "$CU/lib/lib$l.so"
  done
  ln -sfn libcurand.so.10 "$CU/lib/libcurand.so"
}

# A libcuda.so.1 to link against: one function per driver symbol cudarc declares, each
# returning CUDA_ERROR_NO_DEVICE (100). The GPU machine's driver provides the real one; put
# on LD_LIBRARY_PATH here, the stub lets the CUDA binaries start and find no GPU, which is
# how the skip paths are tried on a machine without one.
build_stub() {
  local stub="$CU/lib/stubs/libcuda.so" src sys stamp
  sys="$(cudarc_dir)/src/driver/sys/mod.rs"
  stamp="no-device-v2 $sys"
  if [ -f "$stub" ] && [ -f "$stub.from" ] && [ "$(cat "$stub.from")" = "$stamp" ]; then
    return
  fi
  log "building the libcuda.so stub from $sys"
  mkdir -p "$CU/lib/stubs"
  src="$CU/lib/stubs/libcuda_stub.c"
  grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+\(' "$sys" | sed -E 's/^pub unsafe fn (cu[A-Za-z0-9_]+)\(/\1/' \
    | sort -u | sed 's/.*/int &(void) { return 100; }/' >"$src"
  if [ ! -s "$src" ]; then
    log "no driver symbols found in $sys"
    exit 1
  fi
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub.tmp" "$src"
  mv -f "$stub.tmp" "$stub"
  ln -sfn libcuda.so "$CU/lib/stubs/libcuda.so.1"
  echo "$stamp" >"$stub.from"
}

print_env() {
  cat <<EOF
export CUDA_HOME="$CU"
export CUDA_ROOT="$CU"
export CUDA_PATH="$CU"
export PATH="$CU/bin:\$PATH"
export LIBRARY_PATH="$CU/lib:$CU/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="$COMPUTE_CAP"
EOF
}

build() {
  eval "$(print_env)"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/cuda}"
  cd "$ROOT"
  local start=$SECONDS
  log "cargo build --release --features cuda (CARGO_TARGET_DIR=$CARGO_TARGET_DIR, sm_$COMPUTE_CAP)"
  cargo build --release --features cuda --bin tunelab
  log "cargo test --release --features cuda --test gpu --no-run"
  local tests
  tests="$(cargo test --release --features cuda --test gpu --no-run --message-format=json \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu" and m.get("executable"):
        print(m["executable"])')"
  if [ -z "$tests" ]; then
    log "cargo did not report the gpu test binary"
    exit 1
  fi
  cp "$tests" "$CARGO_TARGET_DIR/gpu-tests"
  strip "$CARGO_TARGET_DIR/release/tunelab" "$CARGO_TARGET_DIR/gpu-tests"
  # The two binaries are over the device tool's 64 MiB; their PTX compresses well.
  XZ_OPT="-6 -T0" tar -cJf "$CARGO_TARGET_DIR/gpu-bundle.tar.xz" -C "$CARGO_TARGET_DIR" release/tunelab gpu-tests
  log "built in $((SECONDS - start)) s:"
  ls -l "$CARGO_TARGET_DIR/release/tunelab" "$CARGO_TARGET_DIR/gpu-tests" "$CARGO_TARGET_DIR/gpu-bundle.tar.xz" >&2
}

# The fused kernels' CUDA source through both compilers, so a typo shows up here and not
# in a device session.
check() {
  eval "$(print_env)"
  local src="$ROOT/src/model/kernels/kernels.cu" ptx
  ptx="$(mktemp --suffix=.ptx)"
  nvcc --ptx -arch="sm_$COMPUTE_CAP" -o "$ptx" "$src"
  log "nvcc: $(grep -c '^.visible .entry' "$ptx") kernels in $src"
  rm -f "$ptx"
  LD_LIBRARY_PATH="$CU/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    python3 "$ROOT/scripts/nvrtc-check.py" "$CU/lib/libnvrtc.so.13" "$src" "compute_$COMPUTE_CAP"
}

install_all() {
  install_toolkit
  link_libraries
  build_stub
}

case "${1:-install}" in
  install) install_all ;;
  env) install_all; print_env ;;
  build) install_all; build ;;
  check) install_all; check ;;
  *)
    echo "usage: scripts/cuda-toolchain.sh [install|env|build|check]" >&2
    exit 2
    ;;
esac
