#!/usr/bin/env python3
"""Prints the table that ends tools/gpu/run-all.sh: Celer's benchmark JSONs next to the card's ceilings and
transformers, all from the same device call, and writes them together as benchmarks-summary.json."""
import glob
import json
import os
import sys

out = sys.argv[1]
load = lambda p: json.load(open(p)) if os.path.exists(p) else None
hf = load(os.path.join(out, "hf-baseline.json"))
rows, summary = [], {"hf": hf, "celer": {}}
weight_bytes = hf["weight_bytes"] if hf else 16.06e9
copy_tbs = hf["ceilings"]["copy_tb_per_s"] if hf else 3.0
# Decode reads every weight once per step: that time is the floor of one step at any batch size up to ~100.
floor_step_s = weight_bytes / (copy_tbs * 1e12)
for path in sorted(glob.glob(os.path.join(out, "celer-*.json"))):
    data = json.load(open(path))
    name = os.path.basename(path)[len("celer-"):-len(".json")]
    summary["celer"][name] = data
    res, par = data.get("results", {}), data.get("parameters", {})
    if "avg_latency" in res:
        b, o = par["batch_size"], par["output_len"]
        tps = b * o / res["avg_latency"]
        ceiling = b / floor_step_s
        rows.append((f"celer {name}", f"{res['avg_latency']:.2f} s", f"{tps:.1f} out tok/s", f"{tps / ceiling:.0%} of the {ceiling:.0f} tok/s bandwidth bound"))
    elif "tokens_per_second" in res:
        rows.append((f"celer {name}", f"{res.get('requests_per_second', 0):.2f} req/s", f"{res.get('output_tokens_per_second', 0):.0f} out tok/s", f"{res.get('tokens_per_second', 0):.0f} total tok/s"))
if hf:
    c = hf["ceilings"]
    rows.append(("card: d2d copy", f"{c['copy_tb_per_s']:.2f} TB/s", "", ""))
    rows.append(("card: bf16 GEMM 8192^3", f"{c['bf16_gemm_tflops']:.0f} TFLOP/s", "", ""))
    for g in hf["hf_generate"]:
        rows.append((f"transformers bs{g['batch_size']}", f"{g['latency_s']:.2f} s", f"{g['output_tokens_per_s']:.1f} out tok/s", ""))
json.dump(summary, open(os.path.join(out, "benchmarks-summary.json"), "w"), indent=1)
width = [max(len(r[i]) for r in rows) for i in range(4)] if rows else []
for r in rows:
    print("  ".join(v.ljust(w) for v, w in zip(r, width)))
