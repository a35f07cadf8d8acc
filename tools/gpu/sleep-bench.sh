#!/usr/bin/env bash
# Sleep mode on a live `celer serve --enable-sleep-mode` (issue 17's wake-time targets): for level 1 (weights backed up in
# pinned host memory) and level 2 (weights discarded, reloaded from the checkpoint on disk or in the page cache), times
# POST /sleep and POST /wake_up, reads the GPU memory in use awake, asleep and woken (nvidia-smi), checks that a greedy
# completion after waking equals the one before, and times a completion that wakes a sleeping model on demand.
# Usage: tools/gpu/sleep-bench.sh BASE_URL MODEL_NAME OUT_JSON
set -euo pipefail
url=$1 model=$2 out=$3

used_mib() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
post_s() { curl -sf -o /dev/null -w '%{time_total}' -X POST "$url$1"; }
complete() {
  curl -sf "$url/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\": \"$model\", \"prompt\": \"The capital of France is\", \"max_tokens\": 16, \"temperature\": 0}" \
    | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["choices"][0]["text"]))'
}

reference=$(complete)
rows=()
for level in 1 2; do
  awake=$(used_mib)
  sleep_s=$(post_s "/sleep?level=$level")
  asleep=$(used_mib)
  # Level 2 reads the checkpoint again: from the disk itself where the page cache can be dropped (root), else from the cache.
  dropped=false
  if [[ $level == 2 ]] && sync && echo 3 2> /dev/null > /proc/sys/vm/drop_caches; then dropped=true; fi
  wake_s=$(post_s "/wake_up")
  woken=$(used_mib)
  text=$(complete)
  # Asleep again, then a completion wakes the model on its own: the request's whole time, wake-up included.
  post_s "/sleep?level=$level" > /dev/null
  start=$(date +%s.%N)
  on_demand_text=$(complete)
  on_demand_s=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
  rows+=("{\"level\": $level, \"sleep_s\": $sleep_s, \"wake_up_s\": $wake_s, \"page_cache_dropped_before_wake_up\": $dropped, \"used_mib_awake\": $awake, \"used_mib_asleep\": $asleep, \"used_mib_woken\": $woken, \"completion_with_wake_up_s\": $on_demand_s, \"same_output_after_wake_up\": $([[ $text == "$reference" ]] && echo true || echo false), \"same_output_after_wake_on_demand\": $([[ $on_demand_text == "$reference" ]] && echo true || echo false)}")
done
(IFS=,; echo "{\"kind\": \"sleep\", \"model\": \"$model\", \"reference_completion\": $reference, \"levels\": [${rows[*]}]}") | python3 -m json.tool > "$out"
cat "$out"
python3 -c "import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if all(l['same_output_after_wake_up'] and l['same_output_after_wake_on_demand'] for l in d['levels']) else 1)" "$out"
