#!/usr/bin/env python3
"""Turns an ncu CSV of many consecutive kernels (gpu__time_duration.sum) into the time of one engine step by kernel.

Steps are cut at the embedding kernel, which opens every forward; only whole steps inside the profiled window
count, and of those only decode-length ones. Usage: ncu_steps.py CSV OUT_JSON "what was profiled" "the command" """
import csv
import json
import os
import subprocess
import sys
from collections import defaultdict

path, out, what, command = sys.argv[1:5]
launches = []
with open(path) as f:
    lines = [line for line in f if line.startswith('"')]   # ncu prints its own log lines before the CSV
for row in csv.DictReader(lines):
    if row.get("Metric Name") != "gpu__time_duration.sum":
        continue
    value = float(row["Metric Value"].replace(",", ""))
    unit = row.get("Metric Unit", "nsecond")
    us = value / 1000 if unit.startswith("n") else value if unit.startswith("u") else value * 1000
    launches.append((int(row["ID"]), row["Kernel Name"].split("(")[0], us))
launches.sort()
starts = [i for i, (_, name, _) in enumerate(launches) if name.startswith("embedding_")]
if len(starts) < 2:
    sys.exit(f"fewer than two step starts (embedding kernels) among {len(launches)} launches")
# Whole steps inside the window; a prefill (or the profiling forward) caught at its start is several times longer
# than a decode step: keep the steps within 1.5x of the median.
spans = [launches[a:b] for a, b in zip(starts, starts[1:])]
times = [sum(us for _, _, us in span) for span in spans]
median = sorted(times)[len(times) // 2]
spans = [span for span, t in zip(spans, times) if t <= 1.5 * median]
steps = len(spans)
by_kernel, counts = defaultdict(float), defaultdict(int)
for _, name, us in (launch for span in spans for launch in span):
    # cuBLAS kernel names carry tile shapes; group them with the skinny GEMMs (their names hold "gemm" too).
    key = "GEMMs (cuBLAS: nvjet / cutlass / gemv / splitK reduce; Celer's skinny_gemm*, fp8_skinny_gemm*)" if any(
        s in name for s in ("nvjet", "gemm", "gemv", "splitK", "cutlass", "Kernel2")) and not name.startswith("moe_") else name
    by_kernel[key] += us / steps
    counts[key] += 1
total = sum(by_kernel.values())
# The bundle's commit (run-all.sh's CELER_COMMIT): the GPU machine's copy of the tree may carry a stale git HEAD.
commit = os.environ.get("CELER_COMMIT")
if not commit:
    try:
        commit = subprocess.check_output(["git", "rev-parse", "HEAD"], text=True).strip()
    except Exception:
        commit = None
result = {
    "what": what, "command": command, "commit": commit, "steps": steps, "step_total_us": round(total, 1),
    "launches_per_step": round(sum(counts.values()) / steps, 1),
    "by_kernel_us": {k: round(v, 1) for k, v in sorted(by_kernel.items(), key=lambda kv: -kv[1])},
    "launches_per_step_by_kernel": {k: round(counts[k] / steps, 1) for k in by_kernel},
}
json.dump(result, open(out, "w"), indent=1)
print(f"{what}: {steps} steps, {total:.0f} us per step, {result['launches_per_step']} launches per step")
for k, v in result["by_kernel_us"].items():
    print(f"  {v:9.1f} us  {v / total:6.1%}  x{result['launches_per_step_by_kernel'][k]:<6} {k}")
