#!/usr/bin/env bash
# Side-by-side CPU benchmark of llama-family fine-tuning: benches/torch_cpu_smollm2.py
# (PyTorch + transformers, SmolLM2-135M's shape) and `tunelab bench smollm2` (the real
# SmolLM2-135M GGUF, dequantized to f32), same recipe (every weight trainable, AdamW 2e-5,
# batch 4 x 64 tokens), same threads, in one run.
#
#   TORCH_PYTHON=/path/to/python-with-torch-and-transformers benches/smollm2_cpu.sh [threads] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
steps="${2:-6}"
py="${TORCH_PYTHON:-python3}"
python3 scripts/fetch_assets.py smollm2
assets="${TUNELAB_ASSETS:-$HOME/.cache/tunelab/assets}"
cargo build --release --quiet
echo "torch:   $(THREADS="$threads" STEPS="$steps" "$py" benches/torch_cpu_smollm2.py 2>/dev/null)"
echo "tunelab: $(CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS="$threads" target/release/tunelab bench smollm2 --steps "$steps" --assets "$assets" | tr -d '\n ')"
