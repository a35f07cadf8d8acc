#!/usr/bin/env bash
# Produces every reference artifact that needs PyTorch/transformers and a GPU, in one run.
# Run from the repo root on the GPU machine with $OUT set (the device tool's output folder):
#   bash tools/gpu/make-references.sh            # TRAIN_MINUTES=5 by default
# Writes into $OUT: model-fixtures.tar.gz, celer-tiny-py.tar, tiny-py-fixtures.tar.gz,
# chat_templates_expected.json (when tools/reference/chat_templates.py exists and succeeds), log.txt.
# Budget (must stay under 9 minutes): fixtures < 1 min, chat templates < 1 min, training script
# TRAIN_MINUTES (its whole run, not only the loop), packing seconds. The timeouts below are
# guards against hangs, not the expected durations.
set -euo pipefail

: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1

export PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=true
TRAIN_MINUTES="${TRAIN_MINUTES:-5}"
MAX_FILE_BYTES=$((16 * 1024 * 1024))
WORK="$(mktemp -d)"
started=$(date +%s)

stage() { echo; echo "== [$(( $(date +%s) - started ))s] $*"; }

stage "machine and versions"
nvidia-smi -L
python3 - <<'PY'
import sys, torch, transformers, tokenizers, safetensors
print("python", sys.version.split()[0], "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| transformers", transformers.__version__, "| tokenizers", tokenizers.__version__,
      "| safetensors", safetensors.__version__)
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")
PY

stage "tiny model fixtures"
timeout 150 python3 tools/reference/make_model_fixtures.py --out "$WORK/model-fixtures"

stage "chat template references"
if [ -f tools/reference/chat_templates.py ]; then
  if timeout 60 python3 tools/reference/chat_templates.py --out "$WORK/chat_templates_expected.json"; then
    cp "$WORK/chat_templates_expected.json" "$OUT/chat_templates_expected.json"
  else
    echo "WARNING: tools/reference/chat_templates.py failed with exit code $?; continuing without it"
  fi
else
  echo "tools/reference/chat_templates.py not present; skipped"
fi

stage "training celer-tiny-py for ${TRAIN_MINUTES} minutes"
train_timeout=$(awk -v m="$TRAIN_MINUTES" 'BEGIN { printf "%d", m * 60 + 60 }')
timeout "$train_timeout" python3 tools/train/train_small_model.py \
  --out-model "$WORK/celer-tiny-py" --out-fixtures "$WORK/tiny-py-fixtures" --minutes "$TRAIN_MINUTES"

stage "packing"
tar -C "$WORK" -czf "$OUT/model-fixtures.tar.gz" model-fixtures
tar -C "$WORK" -cf "$OUT/celer-tiny-py.tar" celer-tiny-py
tar -C "$WORK" -czf "$OUT/tiny-py-fixtures.tar.gz" tiny-py-fixtures
ls -l "$WORK/celer-tiny-py" "$OUT"
too_big=0
for f in "$OUT"/*; do
  size=$(stat -c %s "$f")
  if [ "$size" -gt "$MAX_FILE_BYTES" ]; then
    echo "ERROR: $f is $size bytes, over the $MAX_FILE_BYTES-byte limit of the output folder"
    too_big=1
  fi
done
[ "$too_big" -eq 0 ] || exit 1

stage "done"
