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
step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --check

step "lint"
cargo clippy --all-targets --locked -- -D warnings

step "tests"
cargo test --locked --all-targets
cargo test --locked --doc

step "ok"
