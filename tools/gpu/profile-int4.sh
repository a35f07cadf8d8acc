#!/usr/bin/env bash
# ncu's detailed sections (speed of light, occupancy, warp stall reasons, memory and pipe use) for one launch of each
# W4A16 kernel in `celer bench gemm --int4` (the 8B shape's qkv_proj, groups of 128): int4_gemm_tc at 1 row,
# int4_gemm_tiled with 4 warps at 1 row and with 8 warps at 64 rows. Reports as text into $OUT.
# On the GPU machine after tools/gpu/run-all.sh has unpacked the bundle:  bash tools/gpu/profile-int4.sh
set -uo pipefail
OUT="${OUT:-/tmp/celer-gpu-out}"
MODEL="${MODEL:-benchmarks/models/llama-3.1-8b-shape}"
mkdir -p "$OUT"
export CELER_CACHE_DIR=/tmp/celer-cache DOTNET_CLI_TELEMETRY_OPTOUT=1
sections=(--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats
          --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section InstructionStats)
profile() { # name, kernel, rows
  # Launch 1 of the kernel is the benchmark's warm-up; the second is a timed one.
  timeout 240 ncu --kernel-name "$2" --launch-skip 1 --launch-count 1 --clock-control none "${sections[@]}" \
    publish/gpu/celer bench gemm --model "$MODEL" --int4 --rows "$3" --num-iters 2 > "$OUT/ncu-int4-$1.txt" 2>&1 \
    || { echo "ncu $1 failed"; tail -5 "$OUT/ncu-int4-$1.txt"; }
}
profile tc-rows1 int4_gemm_tc_bf16_same_m8 1
profile tiled-4w-rows1 int4_gemm_tiled_bf16_same_m16_w4 1
profile tiled-8w-rows64 int4_gemm_tiled_bf16_same_m64_w8 64
