#!/usr/bin/env bash
# Side-by-side benchmark of the teaching case: PyTorch and tunelab in one run, same job
# (1000 points, full-batch SGD, lr 0.01, 1000 timed steps), reported as a ratio.
#
#   benches/linreg.sh [cpu|cuda] [runs]
#
# PyTorch comes from $TORCH_PYTHON (a python with torch installed; default python3).
# tunelab is built in release mode (with --features cuda for a cuda run, or give
# $TUNELAB_BIN). Threads are pinned to 2, as on the CI machine.
set -euo pipefail
cd "$(dirname "$0")/.."
device="${1:-cpu}"; runs="${2:-5}"
py="${TORCH_PYTHON:-python3}"
bin="${TUNELAB_BIN:-}"
if [ -z "$bin" ]; then
  features=(); [ "$device" = cuda ] && features=(--features cuda)
  cargo build --release --quiet "${features[@]}"
  bin=target/release/tunelab
fi
export OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
torch_rates=(); tl_rates=()
for i in $(seq "$runs"); do
  t=$("$py" benches/torch_linreg.py "$device" 2)
  l=$("$bin" bench linreg --device "$device")
  torch_rates+=("$(echo "$t" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["linreg_sgd_steps_per_s"])')")
  tl_rates+=("$(echo "$l" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["linreg_sgd_steps_per_s"])')")
  echo "run $i: torch $t"
  echo "run $i: tunelab $(echo "$l" | tr -d '\n ')"
done
tm=$(printf '%s\n' "${torch_rates[@]}" | median)
lm=$(printf '%s\n' "${tl_rates[@]}" | median)
echo "median steps/s on $device: torch $tm, tunelab $lm, ratio tunelab/torch $(awk "BEGIN {printf \"%.2f\", $lm/$tm}")"
