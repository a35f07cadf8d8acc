#!/usr/bin/env bash
# Builds what the GPU machine runs (it has no .NET): the celer CLI and the CUDA test executable, self-contained
# for linux-x64 in ONE folder so they share the runtime files, packed as publish/gpu-bundle.tar.xz for the
# device tool's `carry`. Then, on the GPU machine: bash tools/gpu/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf publish/gpu publish/gpu-bundle.tar.xz
common=(-c Release -r linux-x64 --self-contained true -o publish/gpu -p:DebugType=none -p:GenerateDocumentationFile=false -nologo -v quiet)
dotnet publish src/Celer.Cli/Celer.Cli.csproj "${common[@]}"
dotnet publish tests/Celer.Backends.Cuda.Tests/Celer.Backends.Cuda.Tests.csproj "${common[@]}"
# Test-platform extras the runner never loads: code coverage collectors and their per-OS folders.
rm -rf publish/gpu/CodeCoverage publish/gpu/alpine publish/gpu/macos publish/gpu/ubuntu
# The coverage instrumentation engine's Windows DLLs and the runtime's debugger support (DAC/DBI, createdump): nothing
# the GPU run loads, and the bundle must fit the device tool's 64 MiB carry limit with the working tree.
rm -rf publish/gpu/x86 publish/gpu/x64 publish/gpu/arm64 publish/gpu/libmscordbi.so publish/gpu/libmscordaccore.so publish/gpu/createdump
# The standalone GCs (loaded only when DOTNET_GCName names one) and the LTTng tracepoint provider (optional, loaded only
# when present): about 0.9 MB of the packed bundle.
rm -f publish/gpu/libclrgc.so publish/gpu/libclrgcexp.so publish/gpu/libcoreclrtraceptprovider.so
# Test-asset tokenizers: the serve stage needs one of the 8B shape's vocabulary (Llama 3's, 128,256 ids) next to its
# config, which is the default; TOKENIZERS=all bundles all four for the tokenizers stage (5 MB more packed: with the
# working tree that is at the 64 MiB carry limit, so leave it for calls that run that stage).
bash tools/fetch-test-assets.sh > /dev/null
for dir in .cache/test-assets/tokenizers/*/; do
  name=$(basename "$dir")
  [[ "${TOKENIZERS:-llama3}" == all || " ${TOKENIZERS:-llama3} " == *" $name "* ]] || continue
  mkdir -p "publish/gpu/assets/$name"
  cp "$dir/tokenizer.json" "$dir/tokenizer_config.json" "publish/gpu/assets/$name/"
done
# The commit being published, which run-all.sh gives the bench JSONs (CELER_COMMIT): COMMIT=<sha> names it for a tree
# unpacked from `git archive` outside a checkout.
commit="${COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}"
[[ -n "$commit" ]] && echo "$commit" > publish/gpu/COMMIT
# xz -9e with a 192 MiB dictionary on one thread: about 2 MB smaller than the default level, which the carry limit
# needs now (the working tree is ~31 MB; about a minute more).
tar -cf - -C publish gpu | xz -9e -T1 --lzma2=preset=9e,dict=192MiB,nice=273 > publish/gpu-bundle.tar.xz
ls -la publish/gpu-bundle.tar.xz
