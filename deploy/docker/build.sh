#!/usr/bin/env bash
# Builds the images: bash deploy/docker/build.sh [cpu] [cuda]   (both when none is named)
# Publishes celer self-contained for linux-x64, stages the build context in publish/docker/ and builds each image with
# docker, or podman where no docker daemon answers. Environment: TAG (default celer; images TAG:cpu, TAG:cuda),
# CPU_BASE and CUDA_BASE (another base image, e.g. the one deploy/docker/debian-base.sh makes), CONTAINER_TOOL.
set -euo pipefail
cd "$(dirname "$0")/../.."
targets=("$@")
[[ $# -gt 0 ]] || targets=(cpu cuda)
tag=${TAG:-celer}
tool=${CONTAINER_TOOL:-$(docker info > /dev/null 2>&1 && echo docker || echo podman)}
for target in "${targets[@]}"; do
  [[ $target == cpu || $target == cuda ]] || { echo "unknown image '$target': cpu or cuda" >&2; exit 2; }
done

context=publish/docker
rm -rf "$context"
# ReadyToRun: the assemblies ship compiled, so a fresh container's first request JIT-compiles less (on 2 cores its first
# timed iteration went from 3.0x to 2.2-2.3x the steady state, 1.5x with the engine's warm-up: cpu-first-request-*.json).
dotnet publish src/Celer.Cli/Celer.Cli.csproj -c Release -r linux-x64 --self-contained true -o "$context/celer" \
  -p:PublishReadyToRun=true -p:DebugType=none -p:GenerateDocumentationFile=false -p:SatelliteResourceLanguages=en -nologo -v quiet
mkdir -p "$context/models"
cp -r models/celer-tiny-py "$context/models/"
cp deploy/docker/entrypoint.sh "$context/entrypoint.sh"
chmod 0755 "$context/entrypoint.sh"
# The image runs as uid 1000: what it copies must be readable by others (a checkout may hold 0600 files).
chmod -R a+rX "$context"

for target in "${targets[@]}"; do
  build=("$tool" build -f "deploy/docker/Dockerfile.$target" -t "$tag:$target")
  # Podman writes OCI images by default, whose format has no HEALTHCHECK; Docker's format keeps it.
  [[ $tool == podman ]] && build+=(--format docker)
  base=${target^^}_BASE
  [[ -n ${!base:-} ]] && build+=(--build-arg "BASE=${!base}")
  "${build[@]}" "$context"
done
