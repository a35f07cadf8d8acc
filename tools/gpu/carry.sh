#!/usr/bin/env bash
# Makes the working tree small enough for the device tool's carry limit (64 MiB for the tree plus the bundle), and
# puts it back. The tool copies tracked files and untracked files git does not ignore, so the shipped models, which no
# GPU test or stage needs but `spec`, `draft`, `structured` and StructuredOutputsOnGpuTests, leave the index for the
# call. While they are out, a pre-commit hook refuses every commit: a commit then would delete them from main.
#   bash tools/gpu/carry.sh trim      # before the device call
#   bash tools/gpu/carry.sh restore   # right after it
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
# The image processor's references (host code only) leave too.
models=(models/celer-tiny-py models/celer-tiny-py-draft models/celer-tiny-py-eagle3 tests/fixtures/multimodal/clip-processor tests/fixtures/multimodal/pil-resize)
exclude="$(git rev-parse --git-path info/exclude)"
hooks="$(git rev-parse --git-path hooks)"
marker="# celer carry.sh trim"
case "${1:-}" in
  trim)
    git rm -r -q --cached "${models[@]}"
    mkdir -p "$(dirname "$exclude")" "$hooks"
    { echo "$marker"; for m in "${models[@]}"; do echo "/$m/"; done; } >> "$exclude"
    printf '#!/bin/sh\necho "tools/gpu/carry.sh trim is in effect: run bash tools/gpu/carry.sh restore before committing." >&2\nexit 1\n' > "$hooks/pre-commit"
    chmod +x "$hooks/pre-commit"
    echo "trimmed: $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes tracked"
    ;;
  restore)
    [[ -f "$exclude" ]] && sed -i "/^$marker\$/,\$d" "$exclude"
    rm -f "$hooks/pre-commit"
    git add "${models[@]}"
    echo "restored"
    ;;
  *)
    echo "usage: bash tools/gpu/carry.sh trim|restore" >&2
    exit 2
    ;;
esac
