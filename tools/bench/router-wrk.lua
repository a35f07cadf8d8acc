-- wrk script for tools/bench/router-overhead.sh: POSTs the body in $WRK_BODY to the URL's path, and at the end prints
-- one JSON line (prefixed "WRK_JSON ") with the rate, the errors and the latency percentiles in milliseconds.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.3f, "requests_per_second": %.1f, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"mean_latency_ms": %.4f, "median_latency_ms": %.4f, "p90_latency_ms": %.4f, "p99_latency_ms": %.4f}\n',
    summary.requests, seconds, summary.requests / seconds,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
