#!/usr/bin/env bash
# One device call for issues 7, 8, 9 and 11: scripts/gpu-check.sh (tests/gpu.rs and a
# `tunelab run` on `device cuda`), then scripts/gpu-bench.sh (PyTorch baseline and
# `tunelab bench suite` side by side), each under its own time limit so that one hang
# cannot spend the whole lease. Logs go to $OUT (gpu-check.log, gpu-bench.log) with the
# JSONs gpu-bench writes. Carry what both need:
#
#   run(command="scripts/gpu-session.sh",
#       carry=["target/cuda/gpu-bundle.tar.xz", "bench-assets", "shared/bench"], timeout_s=540)
#
# (see the header of scripts/gpu-bench.sh for preparing bench-assets/ and shared/bench/).
# Exit status: 0 when both passed, else 1.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$(mktemp -d)}"
export OUT PYTHONUNBUFFERED=1
status=0
timeout "${GPU_CHECK_LIMIT:-240}" scripts/gpu-check.sh 2>&1 | tee "$OUT/gpu-check.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
GPU_BUNDLE_UNPACKED=1 timeout "${GPU_BENCH_LIMIT:-280}" scripts/gpu-bench.sh 2>&1 | tee "$OUT/gpu-bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "gpu-session: $([ $status -eq 0 ] && echo passed || echo FAILED)"
exit $status
