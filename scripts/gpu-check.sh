#!/usr/bin/env bash
# The GPU check of issue 7, for a machine with an NVIDIA GPU and no cargo: run from the
# repository root with the binaries `scripts/cuda-toolchain.sh build` made, e.g. through
# the device tool:
#
#   run(command="scripts/gpu-check.sh", carry=["target/cuda/gpu-bundle.tar.xz"])
#
# The bundle holds the stripped `tunelab` and `gpu-tests` binaries (the two unpacked are
# over the device tool's 64 MiB); unpacked binaries in target/cuda are used as they are.
# Prints nvidia-smi, runs tests/gpu.rs, then a small `tunelab run` script on `device cuda`
# (fit, eval, show memory for the linear model and a tiny BERT). Exit status: the number
# of failed stages (0 = all passed).
set -uo pipefail

DIR="${TUNELAB_CUDA_BIN:-target/cuda}"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
failed=0
stage() { echo; echo "=== $* ==="; }

if [ -f "$DIR/gpu-bundle.tar.xz" ]; then  # always: a warm machine may keep an older build
  tar -xJf "$DIR/gpu-bundle.tar.xz" -C "$DIR"
fi
for bin in "$DIR/release/tunelab" "$DIR/gpu-tests"; do
  if [ ! -x "$bin" ]; then
    echo "gpu-check: no $bin; build with scripts/cuda-toolchain.sh build and carry $DIR/gpu-bundle.tar.xz" >&2
    exit 100
  fi
done

stage "nvidia-smi"
nvidia-smi || failed=$((failed + 1))

stage "shared libraries"
if ldd "$DIR/release/tunelab" | grep 'not found'; then
  echo "gpu-check: missing libraries above; is the CUDA 13 runtime in /usr/local/cuda/lib64?"
  failed=$((failed + 1))
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

stage "tests/gpu.rs"
start=$SECONDS
"$DIR/gpu-tests" --nocapture --test-threads=1 2>&1 | tee "$work/gpu-tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=$((failed + 1))
# On a GPU machine a skipped test is a failure: the tests skip only when no device opens.
if grep -q 'skipped: ' "$work/gpu-tests.log"; then
  echo "gpu-check: tests skipped — no CUDA device opened"
  failed=$((failed + 1))
fi
echo "gpu tests: $((SECONDS - start)) s"

stage "tunelab run on device cuda"
moods=(good great fine nice lovely bad awful poor dull boring)
things=(plot acting music)
for i in $(seq 0 63); do
  a=$((i % 5)) b=$(((i / 5) % 5)) c=${things[$(((i / 25) % 3))]}
  echo "the $c was ${moods[$a]} and ${moods[$b]}" >>"$work/pos.txt"
  echo "the $c was ${moods[$((5 + a))]} and ${moods[$((5 + b))]}" >>"$work/neg.txt"
done
cat >"$work/check.tune" <<EOF
device cuda
seed 1
data synthetic linear n=4096 w=[3,-1,0.5] b=2 noise=0.1
load linear
optimizer adamw lr=0.05
fit epochs=3
eval
show memory
data $work/pos.txt $work/neg.txt max_len=16
load bert config=tiny vocab=tests/fixtures/tiny-bert-pt/vocab.txt task=classify
optimizer adamw lr=1e-3
fit epochs=2 batch=16
eval
plot loss file=$work/loss
fit epochs=1 batch=16
show memory
precision bf16
fit epochs=2 batch=16
eval
show memory
device
EOF
start=$SECONDS
"$DIR/release/tunelab" run "$work/check.tune" || failed=$((failed + 1))
echo "tunelab run: $((SECONDS - start)) s"

stage "summary"
echo "failed stages: $failed"
exit "$failed"
