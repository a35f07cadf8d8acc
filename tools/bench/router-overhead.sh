#!/usr/bin/env bash
# The router's overhead on this machine: starts $BACKENDS `celer serve` backends (the default model, CPU) and one
# `celer router` over them, all on loopback, then
#   1. `celer bench router`: closed-loop clients at each concurrency, then requests at fixed rates, straight to the
#      backends and through the router in alternating phases, with the CPU time of the load generator, the router and
#      the backends per phase;
#   2. with wrk installed (Debian: apt-get install wrk), the same request from wrk, a load generator in C that needs far
#      less CPU per request than .NET's HttpClient: direct to the first backend and through the router, alternating,
#      with the router's and the backends' CPU time read from /proc around each run.
# The wrk runs are added to the bench's JSON as results.wrk. Usage, from a built checkout (dotnet build -c Release):
#   tools/bench/router-overhead.sh benchmarks/results/cpu-router-overhead-$(date +%F).json
# Settings by environment: BACKENDS (2), CONCURRENCY ("1 4 16 64"), RATES (requests/s, "1000 2000 5000"), DURATION (10 s measured per path and concurrency),
# ROUNDS (5 alternations), ENDPOINT (tokenize | completions), WRK_DURATION (3 s per wrk run), PORT (18300: the router;
# the backends take the ports after it), CELER (the built CLI).
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:?usage: $0 OUTPUT_JSON}
backends=${BACKENDS:-2}
concurrency=${CONCURRENCY:-1 4 16 64}
rates=${RATES:-1000 2000 5000}
duration=${DURATION:-10}
rounds=${ROUNDS:-5}
endpoint=${ENDPOINT:-tokenize}
wrk_duration=${WRK_DURATION:-3}
port=${PORT:-18300}
celer=${CELER:-src/Celer.Cli/bin/Release/net10.0/celer}
[[ -x $celer ]] || { echo "error: $celer is not built (dotnet build Celer.slnx -c Release)" >&2; exit 1; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_healthy() {
  for _ in $(seq 1 240); do
    curl -sf "$1/health" >/dev/null && return 0
    sleep 0.5
  done
  echo "error: $1 did not become healthy" >&2
  exit 1
}

backend_urls=() backend_pids=()
for i in $(seq 1 "$backends"); do
  url=http://127.0.0.1:$((port + i))
  "$celer" serve --port $((port + i)) --disable-log-stats --log-level Warning >/dev/null &
  pids+=($!) backend_pids+=($!) backend_urls+=("$url")
done
for url in "${backend_urls[@]}"; do wait_healthy "$url"; done
router_url=http://127.0.0.1:$port
"$celer" router $(printf -- '--backend %s ' "${backend_urls[@]}") --port "$port" --log-level Warning >/dev/null &
router_pid=$!
pids+=("$router_pid")
wait_healthy "$router_url"

export CELER_COMMIT=${CELER_COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
# shellcheck disable=SC2086 # CONCURRENCY and RATES are lists of numbers
"$celer" bench router --router-url "$router_url" $(printf -- '--backend-url %s ' "${backend_urls[@]}") \
  --endpoint "$endpoint" --concurrency $concurrency --request-rate $rates --duration "$duration" --rounds "$rounds" \
  --router-pid "$router_pid" $(printf -- '--backend-pid %s ' "${backend_pids[@]}") --output-json "$out"

command -v wrk >/dev/null || { echo "wrk is not installed: only the celer bench results were written"; exit 0; }

# The request the bench sent, so wrk sends the same bytes.
export WRK_BODY
WRK_BODY=$(jq -c '.parameters.request_body' "$out")
path=$(jq -r '.parameters.endpoint' "$out")
ticks_per_second=$(getconf CLK_TCK)
cpu_ticks() { local total=0; for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$total"; }

runs=()
for c in $concurrency; do
  for round in 1 2; do
    # ABBA, as the bench: direct, router, router, direct.
    targets=("direct ${backend_urls[0]}" "router $router_url")
    ((round == 2)) && targets=("router $router_url" "direct ${backend_urls[0]}")
    for target in "${targets[@]}"; do
      read -r name url <<<"$target"
      r0=$(cpu_ticks "$router_pid") b0=$(cpu_ticks "${backend_pids[@]}")
      json=$(wrk -t1 -c"$c" -d"${wrk_duration}s" -s tools/bench/router-wrk.lua "$url$path" | sed -n 's/^WRK_JSON //p')
      r1=$(cpu_ticks "$router_pid") b1=$(cpu_ticks "${backend_pids[@]}")
      runs+=("$(jq -c --arg path "$name" --arg url "$url" --argjson c "$c" --argjson rt $((r1 - r0)) --argjson bt $((b1 - b0)) --argjson hz "$ticks_per_second" \
        '{path: $path, url: $url, connections: $c} + . + {router_cpu_seconds: ($rt / $hz), backends_cpu_seconds: ($bt / $hz)}
         | .router_cpu_us_per_request = (if .path == "router" and .requests > 0 then .router_cpu_seconds * 1e6 / .requests else null end)' <<<"$json")")
      echo "wrk $name c=$c: $(jq -r '"\(.requests_per_second|floor) req/s, p50 \(.median_latency_ms) ms, p99 \(.p99_latency_ms) ms"' <<<"${runs[-1]}")"
    done
  done
done

printf '%s\n' "${runs[@]}" | jq -s --arg threads 1 --argjson seconds "$wrk_duration" \
  '{threads: ($threads|tonumber), seconds_per_run: $seconds,
    note: "wrk sends direct requests to the first backend only (it has one target per run); the router spreads its own over all backends",
    runs: .}' >"$out.wrk"
jq --slurpfile wrk "$out.wrk" '.results.wrk = $wrk[0]' "$out" >"$out.tmp" && mv "$out.tmp" "$out" && rm "$out.wrk"
echo "wrk runs added to $out"
