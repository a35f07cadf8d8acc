#!/usr/bin/env bash
# Every GPU test and benchmark in one device call. Prepare here with tools/gpu/publish.sh, then run on the GPU
# machine from the repo root (carry publish/gpu-bundle.tar.xz):
#   STAGES="templates tokenizers tests gemm fp8gemm latency pdl prefill context fp8 fp8w int4gemm int4w hostgap moe moefp8 moeint4 mixtral spec espec structured attention throughput serve coldstart sleep hf" bash tools/gpu/run-all.sh
# (tp: tensor parallelism on a machine of two GPUs, run only when named. draft: trains celer-tiny-py's draft model into $OUT, which the spec stage then measures; minutes of training, so
# it runs only when named. eagle: trains celer-tiny-py's EAGLE-3 head and the engine's reference drafts (eagle3-fixture.json)
# into $OUT; minutes too, so only when named. espec: EAGLE-3 speculative decoding measured (celer-tiny-py's head on real
# prompts, the 8B shape with a random head). poolfix: writes the pooling fixtures into $OUT; encfix: writes the encoder fixtures (BERT and
# XLM-R embedders and cross-encoders, a BERT classifier, a Qwen3 sequence classifier) into $OUT; pooling: embedding
# throughput beside sentence-transformers; poolgemma: the same for EmbeddingGemma's shape.)
# Writes logs and JSON results into $OUT and prints a short table last.
set -uo pipefail
OUT="${OUT:-/tmp/celer-gpu-out}"
# ceilings: the card's copy and GEMM rates alone, for a call that leaves the (long) hf stage to another.
STAGES="${STAGES:-templates tokenizers tests gemm fp8gemm latency pdl prefill context fp8 fp8w int4gemm int4w hostgap moe moefp8 moeint4 mixtral spec espec structured attention throughput serve coldstart sleep hf}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run-all.log") 2>&1
export PYTHONUNBUFFERED=1 CELER_CACHE_DIR=/tmp/celer-cache DOTNET_CLI_TELEMETRY_OPTOUT=1
MODEL=benchmarks/models/llama-3.1-8b-shape
started=$(date +%s)
stage() { echo; echo "== [$(( $(date +%s) - started ))s] $*"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
status=0

stage "unpack"
# Always the bundle that came with this call: a warm machine keeps the previous call's ignored files.
rm -rf publish/gpu && tar -xJf publish/gpu-bundle.tar.xz -C publish || exit 1
# The commit the bundle was built from, for the bench JSONs (the copied tree's .git may be stale; BenchmarkReport).
[[ -s publish/gpu/COMMIT ]] && export CELER_COMMIT="$(cat publish/gpu/COMMIT)"
nvidia-smi -L
export CELER_CARD="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
git rev-parse HEAD 2>/dev/null || true

if has templates; then
  stage "chat template references (transformers)"
  timeout 120 python3 tools/reference/chat_templates.py --out "$OUT/chat_templates_expected.json" || status=1
fi

if has tokenizers; then
  # What transformers 5 (AutoTokenizer, per model_type) and tokenizer.json alone give for tricky texts, one JSON per
  # tokenizer in tokenizer-reference/ (packed into results.tgz). A tokenizer that fails records its error and the rest go on.
  # It covers the tokenizers the bundle carries: build it with TOKENIZERS=all bash tools/gpu/publish.sh for all four.
  stage "tokenizer references (transformers vs tokenizer.json)"
  mkdir -p "$OUT/tokenizer-reference"
  for dir in publish/gpu/assets/*/; do
    name=$(basename "$dir")
    timeout 180 python3 tools/reference/tokenizer_reference.py --out "$OUT/tokenizer-reference" "$dir"
    rc=$?
    (( rc == 0 )) || status=1
    [[ -s "$OUT/tokenizer-reference/$name.json" ]] || printf '{"kind": "tokenizer-reference", "name": "%s", "ok": false, "error": "tokenizer_reference.py exited %d without writing its JSON"}\n' \
      "$name" "$rc" > "$OUT/tokenizer-reference/$name.json"
  done
fi

if has tests; then
  stage "GPU tests"
  # GPU_TEST_ARGS narrows the run (xunit's -class / -method filters), for a call that needs only some classes.
  # shellcheck disable=SC2086
  timeout 300 publish/gpu/Celer.Backends.Cuda.Tests -noColor -diagnostics -parallel none ${GPU_TEST_ARGS:-} || status=1
fi

bench() { # name, then celer bench arguments (a later --max-model-len overrides the default)
  local name=$1; shift
  stage "celer bench $name"
  timeout 300 publish/gpu/celer bench "$@" --model "$MODEL" --load-format "${LOAD_FORMAT:-dummy}" --device cuda --max-model-len "${MAX_LEN:-4096}" \
    --no-enable-prefix-caching --output-json "$OUT/celer-$name.json" || status=1
}
latency() { # name, batch size, input length, output length, then extra flags
  local name=$1 b=$2 i=$3 o=$4; shift 4
  bench "$name" latency --batch-size "$b" --input-len "$i" --output-len "$o" --num-iters-warmup 1 --num-iters "${ITERS:-3}" "$@"
}
if has latency; then
  # LATENCY_BATCHES="1 32" runs those batch sizes alone (a baseline for another stage in the same call).
  for b in ${LATENCY_BATCHES:-1 32 64 128 256}; do latency "latency-bs$b" "$b" 128 256; done
  if [[ -z "${LATENCY_BATCHES:-}" ]]; then
    latency latency-bs1-eager 1 128 256 --enforce-eager
    # Async scheduling (the default on CUDA) against synchronous steps.
    for b in 1 256; do latency "latency-bs$b-sync" "$b" 128 256 --no-async-scheduling; done
  fi
fi
if has tp; then
  # Tensor parallelism over the machine's GPUs (nvidia-h200-x2): the 8B shape at TP 1 and at TP 2, with the custom
  # all-reduce (the default) and with NCCL alone; then the 70B shape, which needs both GPUs.
  stage "tensor parallelism"
  if (( $(nvidia-smi -L | wc -l) < 2 )); then
    echo "tp: one GPU here, nothing to split over"
  else
    for b in 1 64; do
      latency "tp1-bs$b" "$b" 128 256
      latency "tp2-bs$b" "$b" 128 256 -tp 2
      latency "tp2-bs$b-nccl" "$b" 128 256 -tp 2 --disable-custom-all-reduce
    done
    for b in 1 64; do MODEL=benchmarks/models/llama-3.1-70b-shape latency "tp2-70b-bs$b" "$b" 128 256 -tp 2; done
    MODEL=benchmarks/models/llama-3.1-70b-shape bench tp2-70b-throughput throughput -tp 2 --num-prompts "${THROUGHPUT_PROMPTS:-500}" --input-len 1000 --output-len 1000
  fi
fi
if has pdl; then
  # Programmatic dependent launch off (CELER_CUDA_PDL=0) against the default (the latency stage's rows).
  export CELER_CUDA_PDL=0
  for b in 1 32; do latency "latency-bs$b-nopdl" "$b" 128 256; done
  unset CELER_CUDA_PDL
fi
if has prefill; then
  # Output 1: the time is the prefill of 8 × 2048 tokens (summarize.py turns it into model TFLOP/s).
  latency prefill-8x2048 8 2048 1 --max-num-batched-tokens 16384
fi
if has context; then
  # Decode over long contexts: the same batch with 129 and with 1 output token; the difference is 128 decode steps.
  for b in 1 64; do
    ITERS=2 MAX_LEN=4352 latency "context4k-bs$b-out1" "$b" 4096 1
    ITERS=2 MAX_LEN=4352 latency "context4k-bs$b-out129" "$b" 4096 129
  done
  MAX_LEN=16640 latency context16k-bs1-out1 1 16384 1
  MAX_LEN=16640 latency context16k-bs1-out129 1 16384 129
fi
if has fp8; then
  # The FP8 KV cache (E4M3, scales 1.0 with dummy weights): half the K/V bytes where long contexts make them count.
  ITERS=2 MAX_LEN=4352 latency context4k-bs64-fp8-out1 64 4096 1 --kv-cache-dtype fp8
  ITERS=2 MAX_LEN=4352 latency context4k-bs64-fp8-out129 64 4096 129 --kv-cache-dtype fp8
  bench throughput-fp8 throughput --num-prompts "${THROUGHPUT_PROMPTS:-500}" --input-len 1000 --output-len 1000 --kv-cache-dtype fp8
fi
if has int4w; then
  # 4-bit weight-only checkpoints of the 8B shape (GPTQ symmetric, AWQ with zero points; groups of 128; 5.7 GB each,
  # written by the GPU): W4A16 decode (the kernels the W4A16 tuner picks per shape and row bucket; int4gemm times them).
  for scheme in ${INT4_SCHEMES:-gptq awq}; do
    stage "INT4 checkpoint of the 8B shape ($scheme)"
    timeout 300 python3 tools/gpu/write_checkpoint.py "$MODEL" /tmp/ckpt-8b-int4 --int4 "$scheme" || { status=1; continue; }
    for b in ${INT4_BATCHES:-1 8 16 32 64 128}; do MODEL=/tmp/ckpt-8b-int4 LOAD_FORMAT=auto latency "latency-int4-$scheme-bs$b" "$b" 128 256; done
  done
fi
if has fp8w; then
  # FP8 W8A8 weights (cuBLASLt's scaled FP8 GEMMs): checkpoints of the 8B shape with random weights quantized as the
  # public FP8 checkpoints are (8 GB each, written by the GPU), per-channel with per-token inputs, and 128 x 128 blocks.
  for scheme in channel block; do
    stage "FP8 checkpoint of the 8B shape ($scheme)"
    timeout 240 python3 tools/gpu/write_checkpoint.py "$MODEL" /tmp/ckpt-8b-fp8 --fp8 "$scheme" || { status=1; continue; }
    for b in 1 32 128; do MODEL=/tmp/ckpt-8b-fp8 LOAD_FORMAT=auto latency "latency-fp8-$scheme-bs$b" "$b" 128 256; done
    if [[ $scheme == channel ]]; then
      MODEL=/tmp/ckpt-8b-fp8 LOAD_FORMAT=auto latency prefill-fp8-channel-8x2048 8 2048 1 --max-num-batched-tokens 16384
      MODEL=/tmp/ckpt-8b-fp8 LOAD_FORMAT=auto bench throughput-fp8-channel throughput --num-prompts "${THROUGHPUT_PROMPTS:-500}" --input-len 1000 --output-len 1000
    fi
    rm -rf /tmp/ckpt-8b-fp8
  done
fi
if has fixtures; then
  # Reference fixtures made on this machine's transformers (FIXTURES="name ..." of make_quantized_fixtures.py), brought
  # back under fixtures/ to be committed.
  stage "quantized reference fixtures: ${FIXTURES:-all}"
  timeout 300 python3 tools/reference/make_quantized_fixtures.py --out "$OUT/fixtures" ${FIXTURES:+--only $FIXTURES} || status=1
fi
if has hostgap; then
  # Where the host matters most: a small model at batch 256 (Qwen3-0.6B's shape); the report has the GPU's idle share.
  MODEL=benchmarks/models/qwen3-0.6b-shape latency hostgap-qwen3-0.6b-bs256 256 128 256
  MODEL=benchmarks/models/qwen3-0.6b-shape latency hostgap-qwen3-0.6b-bs1 1 128 256
  MODEL=benchmarks/models/qwen3-0.6b-shape latency hostgap-qwen3-0.6b-bs256-sync 256 128 256 --no-async-scheduling
fi
if has moe; then
  # Mixtures of experts: Qwen3-30B-A3B's shape (128 experts, top 8, 61 GB of bf16 weights, 3.3B active per token),
  # gpt-oss-20b's in bf16 (32 biased experts, top 4, sinks, 42 GB, 3.6B active) and with its experts in MXFP4 as
  # published (13 GB), and gpt-oss-120b's in MXFP4 (128 experts, 36 layers, 65 GB; 234 GB in bf16 would not fit).
  # MOE_SHAPES picks among them; MOE_BATCHES="1" runs those decode batches alone (no prefill).
  for shape in ${MOE_SHAPES:-qwen3-30b-a3b gpt-oss-20b gpt-oss-20b-mxfp4 gpt-oss-120b}; do
    for b in ${MOE_BATCHES:-1 32 128}; do MODEL=benchmarks/models/$shape-shape latency "moe-$shape-bs$b" "$b" 128 256; done
    [[ -n "${MOE_BATCHES:-}" ]] || MODEL=benchmarks/models/$shape-shape latency "moe-$shape-prefill-8x2048" 8 2048 1 --max-num-batched-tokens 16384
  done
fi
# A checkpoint of Qwen3-30B-A3B's shape quantized by write_checkpoint.py (flags after the label), written by the GPU,
# beside the moe stage's bf16 shape: moefp8 in Qwen3-30B-A3B-FP8's layout (every expert's projections in E4M3 with
# 128 x 128 block scales, routers in bf16; 31 GB), the experts decoded in registers by moe.cu's *_fp8 kernels; moeint4
# in Qwen3-30B-A3B-GPTQ-Int4's (attention and experts GPTQ 4-bit in groups of 128, symmetric), by the *_int4 kernels.
moe_checkpoint() {
  local label=$1; shift
  stage "$label checkpoint of Qwen3-30B-A3B's shape ($*)"
  if timeout 400 python3 tools/gpu/write_checkpoint.py benchmarks/models/qwen3-30b-a3b-shape "/tmp/ckpt-qwen3-moe-$label" "$@"; then
    for b in ${MOE_BATCHES:-1 32 128}; do MODEL="/tmp/ckpt-qwen3-moe-$label" LOAD_FORMAT=auto latency "moe-qwen3-30b-a3b-$label-bs$b" "$b" 128 256; done
    [[ -n "${MOE_BATCHES:-}" ]] || MODEL="/tmp/ckpt-qwen3-moe-$label" LOAD_FORMAT=auto latency "moe-qwen3-30b-a3b-$label-prefill-8x2048" 8 2048 1 --max-num-batched-tokens 16384
  else
    status=1
  fi
  rm -rf "/tmp/ckpt-qwen3-moe-$label"
}
if has moefp8; then moe_checkpoint fp8 --fp8 block; fi
if has moeint4; then moe_checkpoint int4 --int4 gptq; fi
if has mixtral; then
  # Mixtral-8x7B's shape (93 GB of bf16 weights, 8 experts, top 2) beside transformers in the same call: batch 1 and 32
  # decode (128 in / 256 out) on both, and Celer's throughput; transformers' compiled static cache is left out for MoE.
  for b in 1 32; do MODEL=benchmarks/models/mixtral-8x7b-shape latency "mixtral-8x7b-bs$b" "$b" 128 256; done
  MODEL=benchmarks/models/mixtral-8x7b-shape bench mixtral-8x7b-throughput throughput --num-prompts 200 --input-len 128 --output-len 256
  stage "transformers on Mixtral-8x7B's shape (dynamic cache, batch 1 and 32)"
  timeout 400 python3 tools/reference/hf_baseline.py --config benchmarks/models/mixtral-8x7b-shape --out "$OUT/hf-mixtral-8x7b.json" --runs 1,32 || status=1
fi
if has draft; then
  # celer-tiny-py's draft model, distilled from it on the same corpus (tools/train/train_draft_model.py), into $OUT.
  stage "train celer-tiny-py's draft model"
  timeout 420 python3 tools/train/train_draft_model.py --target models/celer-tiny-py --out-model "$OUT/celer-tiny-py-draft" \
    --minutes "${DRAFT_MINUTES:-4}" || status=1
fi
if has eagle; then
  # celer-tiny-py's EAGLE-3 head (tools/train/train_eagle3_head.py) and the engine's reference drafts, into $OUT.
  stage "train celer-tiny-py's EAGLE-3 head"
  timeout 420 python3 tools/train/train_eagle3_head.py --target models/celer-tiny-py --out-model "$OUT/celer-tiny-py-eagle3" \
    --out-fixture "$OUT/eagle3-fixture.json" --minutes "${EAGLE_MINUTES:-4}" || status=1
fi
if has spec; then
  # n-gram speculative decoding (prompt lookup, k = 4) and the draft model (k = 3; the one just trained when the draft
  # stage ran) beside plain decoding at batch 1: the default model (real weights) and the 8B shape (random weights: few
  # n-gram drafts, so mostly the cost of proposing and of the eager verify steps).
  SPEC='{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 2, "prompt_lookup_max": 4}'
  draft=models/celer-tiny-py-draft
  [[ -f "$OUT/celer-tiny-py-draft/model.safetensors" ]] && draft="$OUT/celer-tiny-py-draft"
  DRAFT_SPEC="{\"method\": \"draft_model\", \"model\": \"$draft\", \"num_speculative_tokens\": 3}"
  MODEL=models/celer-tiny-py LOAD_FORMAT=auto MAX_LEN=1024 latency spec-off-celer-tiny-py-bs1 1 128 256
  MODEL=models/celer-tiny-py LOAD_FORMAT=auto MAX_LEN=1024 latency spec-ngram-celer-tiny-py-bs1 1 128 256 --speculative-config "$SPEC"
  if [[ -f "$draft/model.safetensors" ]]; then
    MODEL=models/celer-tiny-py LOAD_FORMAT=auto MAX_LEN=1024 latency spec-draft-celer-tiny-py-bs1 1 128 256 --speculative-config "$DRAFT_SPEC"
    MODEL=models/celer-tiny-py LOAD_FORMAT=auto MAX_LEN=1024 latency spec-off-celer-tiny-py-bs64 64 128 256
    MODEL=models/celer-tiny-py LOAD_FORMAT=auto MAX_LEN=1024 latency spec-draft-celer-tiny-py-bs64 64 128 256 --speculative-config "$DRAFT_SPEC"
  fi
  latency spec-ngram-8b-bs1 1 128 256 --speculative-config "$SPEC"
fi
if has espec; then
  # EAGLE-3 (k = 3): celer-tiny-py's head (the one just trained when the eagle stage ran) on the fixture prompts, greedy
  # and at temperature 1, beside plain decoding and the draft model on the same prompts; then the 8B shape with a
  # random head of EAGLE3-LLaMA3.1-Instruct-8B's shape, which accepts nothing: the cost of verifying and drafting.
  eagle=models/celer-tiny-py-eagle3
  [[ -f "$OUT/celer-tiny-py-eagle3/model.safetensors" ]] && eagle="$OUT/celer-tiny-py-eagle3"
  draft=models/celer-tiny-py-draft
  EAGLE_SPEC="{\"method\": \"eagle3\", \"model\": \"$eagle\", \"num_speculative_tokens\": 3}"
  DRAFT_SPEC="{\"method\": \"draft_model\", \"model\": \"$draft\", \"num_speculative_tokens\": 3}"
  PROMPTS=(--prompt "def fibonacci(n):" --prompt $'import os\n' --prompt $'class Stack:\n    def __init__(self):' --prompt "for i in range("
    --prompt $'def read_config(path):\n    """' --prompt $'<|im_start|>user\nWrite a function that reverses a string.<|im_end|>\n<|im_start|>assistant\n')
  if [[ -f "$eagle/model.safetensors" ]]; then
    for t in 0 1; do
      tiny=(1 0 256 --temperature "$t" "${PROMPTS[@]}")
      MODEL=models/celer-tiny-py LOAD_FORMAT=auto MAX_LEN=1024 ITERS=6 latency "spec-off-celer-tiny-py-prompts-t$t-bs1" "${tiny[@]}"
      MODEL=models/celer-tiny-py LOAD_FORMAT=auto MAX_LEN=1024 ITERS=6 latency "spec-eagle3-celer-tiny-py-prompts-t$t-bs1" "${tiny[@]}" --speculative-config "$EAGLE_SPEC"
      if [[ -f "$draft/model.safetensors" ]]; then
        MODEL=models/celer-tiny-py LOAD_FORMAT=auto MAX_LEN=1024 ITERS=6 latency "spec-draft-celer-tiny-py-prompts-t$t-bs1" "${tiny[@]}" --speculative-config "$DRAFT_SPEC"
      fi
    done
    MODEL=models/celer-tiny-py LOAD_FORMAT=auto MAX_LEN=1024 latency spec-off-celer-tiny-py-prompts-t0-bs64 64 0 256 --temperature 0 "${PROMPTS[@]}"
    MODEL=models/celer-tiny-py LOAD_FORMAT=auto MAX_LEN=1024 latency spec-eagle3-celer-tiny-py-prompts-t0-bs64 64 0 256 --temperature 0 "${PROMPTS[@]}" --speculative-config "$EAGLE_SPEC"
  fi
  latency spec-off-8b-bs1 1 128 256
  latency spec-eagle3-8b-bs1 1 128 256 --speculative-config '{"method": "eagle3", "model": "benchmarks/models/llama-3.1-8b-eagle3-shape", "num_speculative_tokens": 3}'
fi
if has poolfix; then
  # Pooling-model fixtures (issue 15): tiny random embedders in sentence-transformers' layouts and its outputs, into $OUT.
  stage "pooling fixtures (sentence-transformers)"
  timeout 300 python3 tools/reference/make_pooling_fixtures.py --out "$OUT/pooling-fixtures" || status=1
fi
if has encfix; then
  # Encoder fixtures: tiny random BERT / XLM-R embedders and cross-encoders, a BERT classifier and a Qwen3 sequence
  # classifier in the Hub's layouts, with sentence-transformers' and transformers' outputs, into $OUT.
  stage "encoder fixtures (sentence-transformers)"
  timeout 300 python3 tools/reference/make_encoder_fixtures.py --out "$OUT/encoder-fixtures" --keep-going || status=1
fi
if has poolgemma; then
  # EmbeddingGemma's shape (a decoder attending both ways, windows of |q - k| < 257 on five layers of six; mean pooling),
  # 10,000 inputs of 512 tokens in bf16, beside sentence-transformers on the same shape in the same call.
  MODEL=benchmarks/models/embeddinggemma-300m-shape MAX_LEN=2048 bench pooling-embeddinggemma-300m throughput \
    --num-prompts "${POOLING_PROMPTS:-10000}" --input-len 512 --dtype bfloat16 --pooler-config '{"pooling_type": "MEAN"}'
  for b in ${POOLING_ST_BATCHES:-32 128}; do
    stage "sentence-transformers on the EmbeddingGemma-300m shape, batch $b"
    timeout 400 python3 tools/reference/st_embedding_baseline.py --config benchmarks/models/embeddinggemma-300m-shape --pooling mean \
      --num-prompts "${POOLING_PROMPTS:-10000}" --input-len 512 --batch-size "$b" --out "$OUT/st-embedding-embeddinggemma-300m-b$b.json" || status=1
  done
fi
if has pooling; then
  # Embeddings (issue 15): the Qwen3-Embedding-0.6B shape (Qwen3-0.6B's config, random weights, last-token pooling),
  # 10,000 inputs of 256 tokens, beside sentence-transformers on the same shape in the same call.
  MODEL=benchmarks/models/qwen3-0.6b-shape MAX_LEN=512 bench pooling-qwen3-0.6b throughput --convert embed \
    --num-prompts "${POOLING_PROMPTS:-10000}" --input-len 256
  # The bge-base-en-v1.5 shape (a BERT encoder: bidirectional attention, CLS pooling), the other row.
  MODEL=benchmarks/models/bge-base-en-v1.5-shape MAX_LEN=512 bench pooling-bge-base throughput \
    --num-prompts "${POOLING_PROMPTS:-10000}" --input-len 256
  # Async scheduling (the default on CUDA: the host reads a step's rows while the next step runs) against synchronous steps.
  MODEL=benchmarks/models/qwen3-0.6b-shape MAX_LEN=512 bench pooling-qwen3-0.6b-sync throughput --convert embed \
    --num-prompts "${POOLING_PROMPTS:-10000}" --input-len 256 --no-async-scheduling
  MODEL=benchmarks/models/bge-base-en-v1.5-shape MAX_LEN=512 bench pooling-bge-base-sync throughput \
    --num-prompts "${POOLING_PROMPTS:-10000}" --input-len 256 --no-async-scheduling
  # sentence-transformers' encode batches 32 inputs by default; a larger batch is its best case.
  for b in ${POOLING_ST_BATCHES:-32 128}; do
    stage "sentence-transformers on the Qwen3-0.6B shape, batch $b"
    timeout 400 python3 tools/reference/st_embedding_baseline.py --config benchmarks/models/qwen3-0.6b-shape \
      --num-prompts "${POOLING_PROMPTS:-10000}" --input-len 256 --batch-size "$b" --out "$OUT/st-embedding-qwen3-0.6b-b$b.json" || status=1
    stage "sentence-transformers on the bge-base-en-v1.5 shape, batch $b"
    timeout 400 python3 tools/reference/st_embedding_baseline.py --config benchmarks/models/bge-base-en-v1.5-shape --pooling cls \
      --num-prompts "${POOLING_PROMPTS:-10000}" --input-len 256 --batch-size "$b" --out "$OUT/st-embedding-bge-base-b$b.json" || status=1
  done
fi
if has structured; then
  # Structured outputs (issue 14): batch 64 with every output under a JSON schema beside the same run unconstrained, the 8B
  # shape with Llama 3's tokenizer. Random weights rarely close a string, so outputs run to their length in both runs;
  # 1024 prompts, so that the first request's wait for the vocabulary's byte trie (~0.3 s, once per engine) weighs little.
  so_model=/tmp/structured-8b
  mkdir -p "$so_model" && cp "$MODEL/config.json" publish/gpu/assets/llama3/tokenizer*.json "$so_model/"
  SCHEMA='{"json": {"type": "object", "properties": {"title": {"type": "string"}, "score": {"type": "integer"}}, "required": ["title", "score"]}}'
  MODEL=$so_model bench structured-off-8b-bs64 throughput --num-prompts "${STRUCTURED_PROMPTS:-1024}" --input-len 128 --output-len 256 --max-num-seqs 64
  MODEL=$so_model bench structured-json-8b-bs64 throughput --num-prompts "${STRUCTURED_PROMPTS:-1024}" --input-len 128 --output-len 256 --max-num-seqs 64 --structured-outputs "$SCHEMA"
fi
if has gemm; then
  stage "celer bench gemm (the decode and prefill GEMMs alone, every candidate kernel)"
  timeout 300 publish/gpu/celer bench gemm --model "$MODEL" --rows 1,8,16,32,64,128,256,4096 --output-json "$OUT/gemm-kernels.json" || status=1
fi
if has fp8gemm; then
  # The FP8 W8A8 decode GEMMs alone (every candidate the tuner times, input quantization included), per-channel and
  # block-scaled; then online FP8 decode (ptpc_fp8: per-channel codes of the dummy bf16 weights, per-token inputs) at
  # the skinny kernels' row counts.
  for scales in per-channel block; do
    stage "celer bench gemm --fp8 $scales"
    timeout 300 publish/gpu/celer bench gemm --model "$MODEL" --fp8 "$scales" --rows 1,2,4,8 --output-json "$OUT/gemm-fp8-$scales.json" || status=1
  done
  for b in ${FP8_BATCHES:-1 4 8}; do latency "latency-ptpc-fp8-bs$b" "$b" 128 256 -q ptpc_fp8; done
fi
if has int4gemm; then
  # The W4A16 GEMMs of the 8B shape alone (groups of 128), every kernel the W4A16 tuner times, at decode row counts.
  stage "celer bench gemm --int4"
  timeout 300 publish/gpu/celer bench gemm --model "$MODEL" --int4 --rows 1,8,16,32,64,128,256 --output-json "$OUT/gemm-int4.json" || status=1
fi
if has attention; then
  stage "celer bench attention (the attention operator alone)"
  timeout 300 publish/gpu/celer bench attention --prefill 8x2048 --decode 64x4096 --output-json "$OUT/attention-kernel.json" || status=1
fi
if has throughput; then
  bench throughput throughput --num-prompts "${THROUGHPUT_PROMPTS:-500}" --input-len 1000 --output-len 1000
  bench throughput-sync throughput --num-prompts "${THROUGHPUT_PROMPTS:-500}" --input-len 1000 --output-len 1000 --no-async-scheduling
fi
start_server() { # name (for logs and the startup JSON), model dir, then celer serve flags; sets serve_pid
  local name=$1 dir=$2; shift 2
  local t0; t0=$(date +%s.%N)
  publish/gpu/celer serve ${dir:+"$dir"} --device cuda --max-model-len 4096 --port 8123 "$@" > "$OUT/$name.log" 2>&1 &
  serve_pid=$!
  until curl -sf localhost:8123/health > /dev/null; do
    sleep 0.05
    if ! kill -0 $serve_pid 2> /dev/null || (( $(date +%s) - ${t0%.*} > 120 )); then status=1; break; fi
  done
  python3 -c "import json,sys; json.dump({'kind': 'serve-startup', 'name': sys.argv[4], 'time_to_healthy_s': float(sys.argv[2]) - float(sys.argv[1])}, open(sys.argv[3], 'w'))" \
    "$t0" "$(date +%s.%N)" "$OUT/celer-$name-startup.json" "$name"
}
stop_server() { # SIGTERM as an orchestrator would (a background job of a script ignores SIGINT); killed after 20 s
  kill -TERM $serve_pid
  for _ in $(seq 200); do kill -0 $serve_pid 2> /dev/null || break; sleep 0.1; done
  if kill -0 $serve_pid 2> /dev/null; then echo "celer serve did not exit 20 s after SIGTERM; killed"; kill -KILL $serve_pid; status=1; fi
  wait $serve_pid
}
if has serve; then
  # vLLM's serving benchmark against a live server: the 8B shape with dummy weights and Llama 3's tokenizer.
  stage "celer serve: time to healthy, then bench serve (random 1024 in / 128 out at 16 req/s)"
  serve_model=/tmp/celer-serve-8b && mkdir -p "$serve_model"
  cp "$MODEL/config.json" publish/gpu/assets/llama3/tokenizer*.json "$serve_model/"
  start_server serve "$serve_model" --load-format dummy
  timeout 240 publish/gpu/celer bench serve --base-url http://localhost:8123 --model "$serve_model" --num-prompts "${SERVE_PROMPTS:-300}" \
    --random-input-len 1024 --random-output-len 128 --request-rate 16 --output-json "$OUT/celer-serve-16rps.json" || status=1
  stop_server
fi
if has coldstart || has sleep; then
  # An 8B-shaped checkpoint of random bf16 weights (16 GB, in the page cache once written).
  stage "an 8B safetensors checkpoint"
  timeout 180 python3 tools/gpu/write_checkpoint.py "$MODEL" /tmp/ckpt-8b || status=1
  cp publish/gpu/assets/llama3/tokenizer*.json /tmp/ckpt-8b/
fi
if has coldstart; then
  stage "celer serve from an 8B safetensors checkpoint: time to healthy"
  start_server coldstart-safetensors /tmp/ckpt-8b
  curl -sf localhost:8123/v1/completions -H 'Content-Type: application/json' \
    -d '{"model": "ckpt-8b", "prompt": "The capital of France is", "max_tokens": 8}' > "$OUT/coldstart-completion.json" || status=1
  stop_server
fi
if has sleep; then
  # Sleep mode (issue 17): wake-up from pinned host memory (level 1) and from the checkpoint (level 2).
  stage "celer serve --enable-sleep-mode: sleep and wake-up times, memory given back, output unchanged"
  start_server sleep /tmp/ckpt-8b --enable-sleep-mode
  timeout 300 bash tools/gpu/sleep-bench.sh http://localhost:8123 ckpt-8b "$OUT/celer-sleep-8b.json" || status=1
  stop_server
  # Two models of the whole card each, taking turns: a request wakes its model after the other, idle, sleeps.
  stage "two sleep-mode models of the whole card taking turns on the GPU"
  printf '{"models": [{"model": "/tmp/ckpt-8b", "served_model_name": "a"}, {"model": "/tmp/ckpt-8b", "served_model_name": "b"}]}' > /tmp/swap-models.json
  start_server swap "" --models-file /tmp/swap-models.json --enable-sleep-mode
  timeout 120 bash tools/gpu/swap-bench.sh http://localhost:8123 "$OUT/celer-sleep-swap-8b.json" || status=1
  stop_server
fi
rm -rf /tmp/ckpt-8b
if has hf; then
  stage "Hugging Face transformers baseline (dynamic cache; static cache compiled) and the card's ceilings"
  timeout 420 python3 tools/reference/hf_baseline.py --config "$MODEL" --out "$OUT/hf-baseline.json" || status=1
elif has ceilings; then
  stage "the card's ceilings (copy bandwidth, bf16 GEMM)"
  timeout 120 python3 tools/reference/hf_baseline.py --config "$MODEL" --out "$OUT/hf-baseline.json" --ceilings-only || status=1
fi

stage "summary"
python3 tools/gpu/summarize.py "$OUT" || status=1
# The device tool brings back at most 8 files: keep the log and the summary, pack the rest (folders too) into one archive.
pack_list=$(mktemp)
(cd "$OUT" && find . -mindepth 1 -maxdepth 1 ! -name run-all.log ! -name benchmarks-summary.json ! -name results.tgz -printf '%P\n' > "$pack_list" \
  && tar -czf results.tgz -T "$pack_list" && xargs -d '\n' -r rm -rf -- < "$pack_list")
rm -f "$pack_list"
exit $status
