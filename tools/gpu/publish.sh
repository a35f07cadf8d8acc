#!/usr/bin/env bash
# Builds what the GPU machine runs (it has no .NET): the celer CLI and the CUDA test executable, self-contained
# for linux-x64 in ONE folder so they share the runtime files, packed as publish/gpu-bundle.tar.gz for the
# device tool's `carry`. Then, on the GPU machine: bash tools/gpu/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf publish/gpu publish/gpu-bundle.tar.gz
common=(-c Release -r linux-x64 --self-contained true -o publish/gpu -p:DebugType=none -p:GenerateDocumentationFile=false -nologo -v quiet)
dotnet publish src/Celer.Cli/Celer.Cli.csproj "${common[@]}"
dotnet publish tests/Celer.Backends.Cuda.Tests/Celer.Backends.Cuda.Tests.csproj "${common[@]}"
tar -czf publish/gpu-bundle.tar.gz -C publish gpu
ls -la publish/gpu-bundle.tar.gz
