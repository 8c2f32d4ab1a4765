#!/usr/bin/env bash
# tunelab's CPU training with its dense layers' products on `gemm` (the default) and on a
# system BLAS (`TUNELAB_BLAS`), beside PyTorch, alternated in one run:
# benches/torch_cpu_smollm2.py, `tunelab bench smollm2` twice; then the same for GPT-2 small.
#
#   TORCH_PYTHON=/path/to/python TUNELAB_BLAS=/path/to/libmkl_rt.so.3 benches/blas_cpu.sh [threads] [rounds]
#
# `pip install mkl` puts libmkl_rt.so.3 in that environment's lib/ (benches/RESULTS.md,
# 2026-12-08, has the figures).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
rounds="${2:-2}"
py="${TORCH_PYTHON:-python3}"
blas="${TUNELAB_BLAS:?set TUNELAB_BLAS to a CBLAS library, e.g. .../lib/libmkl_rt.so.3}"
unset TUNELAB_BLAS
python3 scripts/fetch_assets.py smollm2 gpt2_tokenizer
assets="${TUNELAB_ASSETS:-$HOME/.cache/tunelab/assets}"
cargo build --release --quiet
export CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS="$threads"
tl() { target/release/tunelab bench "$@" --assets "$assets" | tr -d '\n '; echo; }
for job in smollm2 gpt2; do
  steps=$([ "$job" = smollm2 ] && echo 6 || echo 10)
  for _ in $(seq "$rounds"); do
    echo "torch $job: $(THREADS="$threads" STEPS="$steps" "$py" "benches/torch_cpu_$job.py" 2>/dev/null)"
    echo "gemm  $job: $(tl "$job" --steps "$steps")"
    echo "blas  $job: $(TUNELAB_BLAS="$blas" tl "$job" --steps "$steps")"
  done
done
