#!/usr/bin/env bash
# Builds Celer in Release and runs every test project, then re-runs the SIMD kernel tests under each
# instruction-set tier (AVX-512 off, AVX2 off, all hardware intrinsics off), as ImageSharp does, so the
# Vector256/Vector128/scalar paths are exercised on any machine. Ends with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/fetch-test-assets.sh

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
dotnet build Celer.slnx -c Release -nologo -v minimal

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

# The container images' Helm chart and manifests: rendered, refused where they should be, schema-checked, and every flag
# they pass checked against the CLI just built. A tool the machine lacks is a SKIP line, not a failure.
bash tools/deploy/lint.sh || status=1
dotnet test Celer.slnx -c Release --no-build -nologo 2>&1 | tee -a "$log" || status=1

# DOTNET_EnableAVX512F=0 leaves Vector512 on in .NET 10; DOTNET_EnableAVX512=0 is the switch that turns it off.
for tier in DOTNET_EnableAVX512 DOTNET_EnableAVX2 DOTNET_EnableHWIntrinsic; do
  echo "== kernel tests with $tier=0"
  env "$tier=0" dotnet test tests/Celer.Backends.Cpu.Tests/Celer.Backends.Cpu.Tests.csproj -c Release --no-build -nologo 2>&1 | tee -a "$log" || status=1
done

# Each test assembly prints "Passed!  - Failed: F, Passed: P, Skipped: S, Total: T, ..." (or "Failed!  - ...").
awk '/(Passed|Failed|Skipped)! +- +Failed: /{
  gsub(",", ""); for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) } }
  END { printf "Tests: %d passed, %d failed, %d skipped\n", p, f, s; exit (f > 0) }' "$log" || status=1
exit $status
