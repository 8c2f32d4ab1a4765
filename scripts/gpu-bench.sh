#!/usr/bin/env bash
# The GPU benchmark of issues 6–9, side by side in one run on a machine with an NVIDIA GPU,
# PyTorch + transformers and no cargo: shared/bench/torch_baseline.py, then
# `tunelab bench suite --device cuda` (the same jobs, the same JSON keys), then the ratio
# of each key (tunelab / PyTorch; above 1 is faster), then the peak device memory keys
# (`*_peak_mib`) side by side, LoRA and frozen-8 beside full fine-tuning. Run from the repository root with the
# CUDA binary `scripts/cuda-toolchain.sh build` made and the assets the suite reads:
#
#   mkdir -p shared bench-assets/minilm && cp -r /work/shared/bench shared/ \
#     && cp ~/.cache/tunelab/assets/minilm/vocab.txt bench-assets/minilm/ \
#     && cp -r ~/.cache/tunelab/assets/gpt2_tokenizer bench-assets/
#   run(command="scripts/gpu-bench.sh",
#       carry=["target/cuda/gpu-bundle.tar.xz", "bench-assets", "shared/bench"])
#
# (`shared/` and `bench-assets/` are git-ignored; together under 3 MB, the bundle 20 MB.)
# TUNELAB_BENCH_ASSETS and TORCH_BASELINE point elsewhere. Writes torch_baseline.json,
# tunelab_suite.json and ratios.json under $OUT when it is set. Steps: TUNELAB_BENCH_STEPS
# (default 30, as the baseline).
set -uo pipefail

DIR="${TUNELAB_CUDA_BIN:-target/cuda}"
ASSETS="${TUNELAB_BENCH_ASSETS:-bench-assets}"
BASELINE="${TORCH_BASELINE:-shared/bench/torch_baseline.py}"
OUT="${OUT:-$(mktemp -d)}"
export OUT
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

if [ -f "$DIR/gpu-bundle.tar.xz" ] && [ -z "${GPU_BUNDLE_UNPACKED:-}" ]; then
  tar -xJf "$DIR/gpu-bundle.tar.xz" -C "$DIR"
fi
for need in "$DIR/release/tunelab" "$BASELINE" "$ASSETS/minilm/vocab.txt" "$ASSETS/gpt2_tokenizer"; do
  if [ ! -e "$need" ]; then
    echo "gpu-bench: no $need (see the header of $0 for what to carry)" >&2
    exit 100
  fi
done

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

echo "=== PyTorch ($BASELINE) ==="
python3 "$BASELINE" || { echo "gpu-bench: the PyTorch baseline failed" >&2; exit 1; }

# shared/bench/torch_baseline.py has no generation job; benches/torch_cpu_gpt2.py (the same
# greedy 64-token generation as `tunelab bench`) supplies PyTorch's figure for that key.
echo "=== PyTorch GPT-2 greedy generation (benches/torch_cpu_gpt2.py, DEVICE=cuda) ==="
if gen=$(DEVICE=cuda STEPS=5 python3 benches/torch_cpu_gpt2.py 2>/dev/null); then
  echo "$gen"
  python3 - "$OUT/torch_baseline.json" "$gen" <<'PY'
import json, sys
path, gen = sys.argv[1], json.loads(sys.argv[2])
baseline = json.load(open(path))
baseline["gpt2_small_generate_tokens_per_s"] = gen["gpt2_small_generate_tokens_per_s"]
json.dump(baseline, open(path, "w"), indent=1)
PY
else
  echo "gpu-bench: the PyTorch generation job failed (transformers missing?); generation gets no ratio" >&2
fi

echo "=== tunelab bench suite ==="
"$DIR/release/tunelab" bench suite --device cuda --steps "${TUNELAB_BENCH_STEPS:-30}" --assets "$ASSETS" \
  > "$OUT/tunelab_suite.json" || { echo "gpu-bench: tunelab bench failed" >&2; exit 1; }
cat "$OUT/tunelab_suite.json"

echo "=== tunelab bench bert-base with the fused CUDA kernels off (TUNELAB_KERNELS=composite) ==="
TUNELAB_KERNELS=composite "$DIR/release/tunelab" bench bert-base --device cuda --steps "${TUNELAB_BENCH_STEPS:-30}" \
  --assets "$ASSETS" > "$OUT/tunelab_composite.json" && cat "$OUT/tunelab_composite.json"

echo "=== ratios (tunelab / PyTorch, same key) ==="
python3 - "$OUT/torch_baseline.json" "$OUT/tunelab_suite.json" "$OUT/ratios.json" <<'PY'
import json, sys
torch, ours = (json.load(open(p)) for p in sys.argv[1:3])
ratios = {}
for key, value in sorted(torch.items()):
    if key.endswith("_per_s") and isinstance(ours.get(key), (int, float)) and value:
        ratios[key] = round(ours[key] / value, 3)
        print(f"{key:48s} torch {value:>10} tunelab {ours[key]:>10}  ×{ratios[key]}")
    elif key.endswith("_per_s"):
        print(f"{key:48s} torch {value:>10} tunelab {'(not run)':>10}")
for key, value in sorted(ours.items()):
    if key.endswith("_per_s") and key not in torch:
        print(f"{key:48s} torch {'(no job)':>10} tunelab {value:>10}")
# Peak device memory of a timed step (MiB; tunelab reads the CUDA memory pool's high-water
# mark): beside PyTorch's when the baseline reports the same key (torch_baseline.py has no
# memory keys today), and each variant of BERT-base beside full fine-tuning at the same
# precision (issue 9: LoRA's peak vs full).
peaks = sorted(k for k in set(torch) | set(ours) if k.endswith("_peak_mib"))
if peaks:
    print("=== peak device memory of a timed step (MiB) ===")
for key in peaks:
    t, o = torch.get(key), ours.get(key)
    side = f"  ×{round(o / t, 3)}" if isinstance(t, (int, float)) and isinstance(o, (int, float)) and t else ""
    if isinstance(o, (int, float)) and isinstance(t, (int, float)) and t:
        ratios[key] = round(o / t, 3)
    print(f"{key:48s} torch {t if t is not None else '(none)':>10} tunelab {o if o is not None else '(none)':>10}{side}")
for key in peaks:
    for variant in ("bert_base_frozen8_", "bert_base_lora_r8_"):
        if key.startswith(variant) and key in ours:
            full = "bert_base_" + key[len(variant):]
            if isinstance(ours.get(full), (int, float)) and ours[full]:
                share = round(ours[key] / ours[full], 3)
                ratios[key[: -len("_peak_mib")] + "_peak_vs_full"] = share
                print(f"{key:48s} tunelab {ours[key]:>10} vs full {ours[full]:>10}  ×{share}")
json.dump(ratios, open(sys.argv[3], "w"), indent=1)
PY
