#!/usr/bin/env bash
# Celer's CPU backend against llama.cpp on this machine, same weights, bf16 on both sides (docs/cpu.md).
#
#   LLAMA_CPP_SRC=<llama.cpp git dir or work tree> LLAMA_CPP_COMMIT=<sha> tools/cpu/compare-llama-cpp.sh
#
# 1. builds llama.cpp at LLAMA_CPP_COMMIT for this machine (build-llama-cpp.sh; cached per commit);
# 2. converts models/celer-tiny-py and a Llama-3.2-1B-shaped checkpoint of seeded random bf16 weights (vocabulary
#    8192: celer-tiny-py's tokenizer, whose 8192 entries fill it exactly) to bf16 GGUF (hf_to_gguf.py);
# 3. checks that both engines tokenize the prompts alike and generate the same greedy tokens (greedy_check.py);
#    fails if they do not;
# 4. times prefill 512, decode at batch 1 and decode at batch 8 on both, interleaved rounds (bench_rounds.py), and
#    writes benchmarks/results/cpu-vs-llama-cpp-<date>-<commit>.json and a table.
#
# Environment: CELER (the celer executable; default the Release build of src/Celer.Cli, which must exist),
# WORK_DIR (scratch: llama.cpp builds, checkpoints, GGUFs, logs; default ~/.cache/celer-cpu-compare), THREADS (2),
# ROUNDS (3: clean rounds wanted), EXTRA_ROUNDS (2: most rounds added to replace disturbed ones), DECODE_TOKENS (32),
# NICE (10: the benchmarks run niced so that other work on a shared machine progresses), QUIET_TIMEOUT (60: seconds
# each run waits at most for other processes to go quiet), MODELS ("tiny 1b", or one).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${LLAMA_CPP_SRC:?set LLAMA_CPP_SRC to a llama.cpp git repository}"
: "${LLAMA_CPP_COMMIT:?set LLAMA_CPP_COMMIT to the llama.cpp commit to compare with}"
work=${WORK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/celer-cpu-compare}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
extra_rounds=${EXTRA_ROUNDS:-2}
decode_tokens=${DECODE_TOKENS:-32}
nice_level=${NICE:-10}
quiet_timeout=${QUIET_TIMEOUT:-60}
models=${MODELS:-tiny 1b}
celer_built=${CELER:-$repo/src/Celer.Cli/bin/Release/net10.0/celer}
[[ -x "$celer_built" ]] || { echo "no celer executable at $celer_built: build with dotnet build Celer.slnx -c Release, or set CELER" >&2; exit 1; }

celer_commit=$(git -C "$repo" rev-parse HEAD)
# The executable is whatever was last built; the newest of its assemblies says how it relates to the commit.
newest=$(find "$(dirname "$celer_built")" -maxdepth 1 -name 'Celer*.dll' -printf '%T@\n' | sort -n | tail -1)
celer_built_at=$(date -u -d "@${newest%.*}" +%Y-%m-%dT%H:%M:%SZ)
celer_dirty=$([[ -z "$(git -C "$repo" status --porcelain --untracked-files=no -- src)" ]] && echo false || echo true)
stamp=$(date -u +%Y-%m-%d)
logs="$work/logs/$stamp-${celer_commit:0:7}"
mkdir -p "$logs" "$work/models"

# Run a copy of the Celer build: others rebuilding the tree mid-run would otherwise swap the binaries under it.
celer_copy="$work/celer-${celer_commit:0:12}"
rm -rf "$celer_copy"
cp -r "$(dirname "$celer_built")" "$celer_copy"
celer="$celer_copy/$(basename "$celer_built")"

echo "== llama.cpp $LLAMA_CPP_COMMIT: build"
llama_bin=$("$here/build-llama-cpp.sh" "$LLAMA_CPP_SRC" "$LLAMA_CPP_COMMIT" "$work")
llama_commit=$(git -C "$LLAMA_CPP_SRC" rev-parse --verify "$LLAMA_CPP_COMMIT^{commit}")

bench_args=()
checks=()
for m in $models; do
  case $m in
    tiny)
      name=celer-tiny-py; dir="$repo/models/celer-tiny-py"; tie=0
      # Its iterations take milliseconds: enough warm-up iterations for .NET's tiered JIT to reach optimized code.
      bench_args+=(--celer-iters "$name:5:10");;
    1b)
      name=llama-3.2-1b-vocab8192; dir="$work/models/$name-seed0"
      # Random weights make near ties: llama.cpp rounds activations to bf16 (relative error 2^-9), which moves
      # logits by about 1e-2 after 16 layers, so a greedy choice between tokens closer than 0.02 in logprob may go
      # either way. A difference is accepted only there, with both tokens in both engines' top 5.
      tie=0.02
      echo "== $name: random bf16 checkpoint"
      nice -n "$nice_level" python3 "$here/write_random_llama.py" "$here/$name/config.json" "$repo/models/celer-tiny-py" "$dir" --seed 0;;
    *) echo "MODELS: unknown model $m (tiny, 1b)" >&2; exit 1;;
  esac
  gguf="$work/models/$name-bf16.gguf"
  echo "== $name: GGUF"
  nice -n "$nice_level" python3 "$here/hf_to_gguf.py" "$dir" "$gguf"
  echo "== $name: greedy outputs"
  nice -n "$nice_level" python3 "$here/greedy_check.py" --celer "$celer" --model "$dir" --gguf "$gguf" \
    --llama-bin "$llama_bin" --logs "$logs" --out "$logs/greedy-$name.json" --threads "$threads" \
    --max-model-len 1024 --tie-logprob "$tie"
  checks+=("greedy_check_$name=@$logs/greedy-$name.json")
  bench_args+=(--model "$name" "$dir" "$gguf")
done

python3 "$here/machine_info.py" "celer_commit=$celer_commit" "celer_src_modified=$celer_dirty" "celer_built_at=$celer_built_at" \
  "llama_cpp_commit=$llama_commit" "llama_cpp_build=cmake Release, GGML_NATIVE=ON, CPU only, OpenMP, static" \
  "llama_3.2_1b_vocab8192=tools/cpu/llama-3.2-1b-vocab8192/config.json (Llama-3.2-1B's with vocab_size 8192), random bf16 weights from write_random_llama.py --seed 0, celer-tiny-py's tokenizer" \
  "${checks[@]}" > "$logs/extra.json"

out="$repo/benchmarks/results/cpu-vs-llama-cpp-$stamp-${celer_commit:0:7}.json"
echo "== benchmark: $rounds clean interleaved rounds wanted, $threads threads"
python3 "$here/bench_rounds.py" --celer "$celer" --llama-bin "$llama_bin" "${bench_args[@]}" --out "$out" \
  --logs "$logs" --rounds "$rounds" --extra-rounds "$extra_rounds" --decode-tokens "$decode_tokens" \
  --threads "$threads" --nice "$nice_level" --quiet-timeout "$quiet_timeout" --max-model-len 1024 \
  --extra "$logs/extra.json"
echo "wrote ${out#"$repo"/}"
