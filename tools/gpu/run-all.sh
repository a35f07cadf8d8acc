#!/usr/bin/env bash
# Every GPU test and benchmark in one device call. Prepare here with tools/gpu/publish.sh, then run on the GPU
# machine from the repo root (carry publish/gpu-bundle.tar.xz):
#   STAGES="templates tests latency throughput hf" bash tools/gpu/run-all.sh
# Writes logs and JSON results into $OUT and prints a short table last.
set -uo pipefail
OUT="${OUT:-/tmp/celer-gpu-out}"
STAGES="${STAGES:-templates tests latency throughput hf}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run-all.log") 2>&1
export PYTHONUNBUFFERED=1 CELER_CACHE_DIR=/tmp/celer-cache DOTNET_CLI_TELEMETRY_OPTOUT=1
MODEL8B=benchmarks/models/llama-3.1-8b-shape
started=$(date +%s)
stage() { echo; echo "== [$(( $(date +%s) - started ))s] $*"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
status=0

stage "unpack"
# Always the bundle that came with this call: a warm machine keeps the previous call's ignored files.
rm -rf publish/gpu && tar -xJf publish/gpu-bundle.tar.xz -C publish || exit 1
nvidia-smi -L
git rev-parse HEAD 2>/dev/null || true

if has templates; then
  stage "chat template references (transformers)"
  timeout 120 python3 tools/reference/chat_templates.py --out "$OUT/chat_templates_expected.json" || status=1
fi

if has tests; then
  stage "GPU tests"
  timeout 300 publish/gpu/Celer.Backends.Cuda.Tests -noColor -diagnostics -parallel none || status=1
fi

bench() { # name, then celer bench arguments
  local name=$1; shift
  stage "celer bench $name"
  timeout 300 publish/gpu/celer bench "$@" --model "$MODEL8B" --load-format dummy --device cuda --max-model-len 4096 \
    --no-enable-prefix-caching --output-json "$OUT/celer-$name.json" || status=1
}
if has latency; then
  bench latency-bs1 latency --batch-size 1 --input-len 128 --output-len 256 --num-iters-warmup 1 --num-iters 3
  bench latency-bs1-eager latency --batch-size 1 --input-len 128 --output-len 256 --num-iters-warmup 1 --num-iters 3 --enforce-eager
  bench latency-bs32 latency --batch-size 32 --input-len 128 --output-len 256 --num-iters-warmup 1 --num-iters 3
fi
if has throughput; then
  bench throughput throughput --num-prompts "${THROUGHPUT_PROMPTS:-256}" --input-len 1000 --output-len 1000
fi
if has hf; then
  stage "Hugging Face transformers baseline and the card's ceilings"
  timeout 240 python3 tools/reference/hf_baseline.py --config "$MODEL8B" --out "$OUT/hf-baseline.json" || status=1
fi

stage "summary"
python3 tools/gpu/summarize.py "$OUT" || status=1
exit $status
