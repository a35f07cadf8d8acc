#!/usr/bin/env bash
# ncu's detailed sections (speed of light, occupancy, warp stall reasons, memory and pipe use) for one launch of the
# prefill attention kernel (flash_attention) in `celer bench attention`: the 8B shape's 8 x 2048 prefill and a short
# encoder-like batch (Qwen3-0.6B's heads, 128 x 256). Reports as text into $OUT.
# On the GPU machine after tools/gpu/run-all.sh has unpacked the bundle:  bash tools/gpu/profile-attention.sh
set -uo pipefail
OUT="${OUT:-/tmp/celer-gpu-out}"
mkdir -p "$OUT"
export CELER_CACHE_DIR=/tmp/celer-cache DOTNET_CLI_TELEMETRY_OPTOUT=1
sections=(--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats
          --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section InstructionStats)
profile() { # name, then celer bench attention arguments
  local name=$1; shift
  # Launch 1 of the kernel is the benchmark's warm-up; the second is a timed one.
  timeout 240 ncu --kernel-name regex:"${KERNEL:-flash_attention}" --launch-skip 1 --launch-count 1 --clock-control none \
    "${sections[@]}" publish/gpu/celer bench attention --num-iters 2 "$@" > "$OUT/ncu-attention-$name.txt" 2>&1 \
    || { echo "ncu $name failed"; tail -5 "$OUT/ncu-attention-$name.txt"; }
}
profile 8b-prefill-8x2048 --prefill 8x2048 --decode 1x64
profile qwen3-0.6b-128x256 --num-heads 16 --num-kv-heads 8 --prefill 128x256 --decode 1x64
profile bge-base-128x256 --num-heads 12 --num-kv-heads 12 --head-dim 64 --prefill 128x256 --decode 1x64
