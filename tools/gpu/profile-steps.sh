#!/usr/bin/env bash
# Kernel time of one decode step by kernel, under ncu, for a few batch sizes (eager, so ncu sees every kernel). The
# clocks and caches are left as they run (--clock-control none --cache-control none): ncu's defaults (base clocks, L2
# flushed before each kernel) made the batch-32 GEMMs look three times slower than they run.
# On the GPU machine after tools/gpu/run-all.sh has unpacked the bundle:  BATCHES="1 32" bash tools/gpu/profile-steps.sh
# (MODEL and LOAD_FORMAT=auto profile a checkpoint, e.g. the int4w stage's /tmp/ckpt-8b-int4; EXTRA_ARGS adds engine
# flags, e.g. EXTRA_ARGS="-q ptpc_fp8" for online FP8 weights.)
set -uo pipefail
OUT="${OUT:-/tmp/celer-gpu-out}"
MODEL="${MODEL:-benchmarks/models/llama-3.1-8b-shape}"
mkdir -p "$OUT"
export CELER_CACHE_DIR=/tmp/celer-cache DOTNET_CLI_TELEMETRY_OPTOUT=1
for b in ${BATCHES:-1 32}; do
  # Six whole decode steps (4..9 after the prefill, step 0): CELER_CUDA_PROFILE_STEPS brackets them with
  # cuProfilerStart/Stop, so loading, GEMM tuning and the prefill stay out of the profile whatever their launch counts.
  cmd=(publish/gpu/celer bench latency --model "$MODEL" --load-format "${LOAD_FORMAT:-dummy}" --device cuda --max-model-len 1024
       --no-enable-prefix-caching --batch-size "$b" --input-len 128 --output-len 12 --num-iters-warmup 0 --num-iters 1 --enforce-eager
       ${EXTRA_ARGS:-})
  CELER_CUDA_PROFILE_STEPS="${STEPS:-4:10}" timeout 300 ncu --metrics gpu__time_duration.sum --profile-from-start off --clock-control none --cache-control none --csv "${cmd[@]}" \
    > "$OUT/ncu-bs$b.csv" 2> "$OUT/ncu-bs$b.err" || { echo "ncu bs$b failed"; tail -5 "$OUT/ncu-bs$b.err"; continue; }
  python3 tools/gpu/ncu_steps.py "$OUT/ncu-bs$b.csv" "$OUT/ncu-steps-bs$b.json" \
    "one decode step of batch $b (128-token prompts), $(basename "$MODEL"), eager, kernel durations from ncu" "ncu ${cmd[*]}"
  rm -f "$OUT/ncu-bs$b.csv" "$OUT/ncu-bs$b.err"
done
