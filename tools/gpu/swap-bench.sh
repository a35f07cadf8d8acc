#!/usr/bin/env bash
# Two sleep-mode models taking turns on one GPU (issue 17): a live `celer serve --models-file` of models `a` and `b`, each
# sized for the whole card, so only one fits awake. Times greedy completions that each wake their model (the other,
# idle, sleeps first), reads the GPU memory in use after each (nvidia-smi), and checks that both answer alike (same
# checkpoint). Usage: tools/gpu/swap-bench.sh BASE_URL OUT_JSON
set -euo pipefail
url=$1 out=$2

used_mib() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
sleeping() { curl -sf "$url/is_sleeping?model=$1" | python3 -c 'import json, sys; print(str(json.load(sys.stdin)["is_sleeping"]).lower())'; }
rows=()
for model in b a b a; do
  start=$(date +%s.%N)
  text=$(curl -sf "$url/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\": \"$model\", \"prompt\": \"The capital of France is\", \"max_tokens\": 16, \"temperature\": 0}" \
    | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["choices"][0]["text"]))')
  seconds=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
  rows+=("{\"model\": \"$model\", \"completion_s\": $seconds, \"text\": $text, \"used_mib\": $(used_mib), \"a_sleeping\": $(sleeping a), \"b_sleeping\": $(sleeping b)}")
done
(IFS=,; echo "{\"kind\": \"sleep-swap\", \"requests\": [${rows[*]}]}") | python3 -m json.tool > "$out"
cat "$out"
# Each request's model is awake afterwards and the other asleep, and both models give the same text.
python3 - "$out" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["requests"]
ok = all(r[f"{r['model']}_sleeping"] is False and r[f"{'a' if r['model'] == 'b' else 'b'}_sleeping"] is True for r in rows[1:])
ok = ok and len({r["text"] for r in rows}) == 1
sys.exit(0 if ok else 1)
PY
