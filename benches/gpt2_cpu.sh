#!/usr/bin/env bash
# Side-by-side CPU benchmark of causal-LM training and generation: benches/torch_cpu_gpt2.py
# (PyTorch + transformers) and `tunelab bench gpt2`, same recipe (GPT-2 small, random
# weights, AdamW 2e-5, batch 4 x 128 tokens; greedy generation of 64 tokens with the
# key/value cache), same threads, in one run.
#
#   TORCH_PYTHON=/path/to/python-with-torch-and-transformers benches/gpt2_cpu.sh [threads] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
steps="${2:-10}"
py="${TORCH_PYTHON:-python3}"
python3 scripts/fetch_assets.py gpt2_tokenizer
assets="${TUNELAB_ASSETS:-$HOME/.cache/tunelab/assets}"
cargo build --release --quiet
echo "torch:   $(THREADS="$threads" STEPS="$steps" "$py" benches/torch_cpu_gpt2.py 2>/dev/null)"
echo "tunelab: $(CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS="$threads" target/release/tunelab bench gpt2 --steps "$steps" --assets "$assets" | tr -d '\n ')"
