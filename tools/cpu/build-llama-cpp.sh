#!/usr/bin/env bash
# Builds llama.cpp's CPU backend at one commit for the machine it runs on and prints the directory of its
# binaries (llama-bench, llama-batched-bench, llama-server). A build is kept per commit and reused.
#
#   tools/cpu/build-llama-cpp.sh SRC COMMIT [CACHE_DIR]
#
# SRC is a llama.cpp git repository (bare or with a work tree); it is only read: the commit is exported with
# `git archive` into CACHE_DIR/llama.cpp-<sha>/src, so neither SRC's work tree nor its worktree list changes.
# The configuration is the one llama.cpp documents for a CPU-only Release build: GGML_NATIVE (-march=native, so
# AVX-512, AVX512-BF16 and VNNI are used where this CPU has them), no GPU backend, no libcurl, static libraries.
set -euo pipefail

src=${1:?usage: build-llama-cpp.sh SRC COMMIT [CACHE_DIR]}
commit_arg=${2:?usage: build-llama-cpp.sh SRC COMMIT [CACHE_DIR]}
cache=${3:-${CELER_CPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/celer-cpu-compare}}

commit=$(git -C "$src" rev-parse --verify "$commit_arg^{commit}") \
  || { echo "build-llama-cpp: $commit_arg is not a commit of $src" >&2; exit 1; }
root="$cache/llama.cpp-$commit"
bin="$root/build/bin"
targets=(llama-bench llama-batched-bench llama-server)

have_all() { for t in "${targets[@]}"; do [[ -x "$bin/$t" ]] || return 1; done; }
if have_all; then echo "$bin"; exit 0; fi

mkdir -p "$root"
if [[ ! -f "$root/src/CMakeLists.txt" ]]; then
  rm -rf "$root/src.partial"
  mkdir -p "$root/src.partial"
  # models/*.gguf are the tokenizer tests' vocabularies, not needed to build; partial clones and mirrors often
  # store them as large files without contents, which would make git archive fail, and an exclude pathspec does not
  # help (git archive still reads the blobs): the paths are listed without them.
  mapfile -t paths < <(git -C "$src" ls-tree --name-only "$commit" | grep -vx models
                        git -C "$src" ls-tree -r --name-only "$commit" -- models | grep -v '\.gguf$')
  git -C "$src" archive --format=tar "$commit" -- "${paths[@]}" | tar -x -C "$root/src.partial"
  mv "$root/src.partial" "$root/src"
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# The build runs under nice: the comparison is meant for shared machines, where other work must keep going.
nice -n 10 cmake -S "$root/src" -B "$root/build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_SYCL=OFF -DGGML_HIP=OFF \
  -DGGML_CCACHE=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON \
  >"$root/configure.log" 2>&1 || { tail -30 "$root/configure.log" >&2; exit 1; }
nice -n 10 cmake --build "$root/build" --config Release -j "$(nproc)" --target "${targets[@]}" \
  >"$root/build.log" 2>&1 || { tail -40 "$root/build.log" >&2; exit 1; }
have_all || { echo "build-llama-cpp: the build finished without ${targets[*]} in $bin" >&2; exit 1; }
echo "$bin"
