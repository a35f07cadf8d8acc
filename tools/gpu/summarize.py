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
# The card (run-all.sh exports it from nvidia-smi) and commit go with the numbers wherever the JSON is copied.
rows, summary = [], {"card": os.environ.get("CELER_CARD"), "commit": os.environ.get("CELER_COMMIT"), "hf": hf, "celer": {}}
# Ratios only against ceilings measured in the same call (the hf or ceilings stage); without them, none.
weight_bytes = hf["weight_bytes"] if hf else 16.06e9
copy_tbs = hf["ceilings"]["copy_tb_per_s"] if hf else None
gemm = hf["ceilings"]["bf16_gemm_tflops"] if hf else None
# Decode reads every weight once per step: that time is the floor of one step at any batch size up to ~100.
floor_step_s = weight_bytes / (copy_tbs * 1e12) if copy_tbs else None
cfg = json.load(open(os.path.join(os.path.dirname(__file__), "../../benchmarks/models/llama-3.1-8b-shape/config.json")))
layers, hidden, inter = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]
heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
head_dim = cfg.get("head_dim", hidden // heads)
q_dim, kv_dim = heads * head_dim, kv_heads * head_dim


def prefill_flops(batch, length):
    """Model FLOPs of a prefill: the GEMMs of every token (lm_head for the last one) plus causal attention."""
    linear = 2 * layers * (hidden * (q_dim + 2 * kv_dim) + q_dim * hidden + 3 * hidden * inter)
    attention = 4 * layers * q_dim * length * (length + 1) / 2
    return batch * (linear * length + attention + 2 * hidden * cfg["vocab_size"])


latency_of = {}
for path in sorted(glob.glob(os.path.join(out, "celer-*.json"))):
    data = json.load(open(path))
    name = os.path.basename(path)[len("celer-"):-len(".json")]
    summary["celer"][name] = data
    res, par = data.get("results", {}), data.get("parameters", {})
    if "avg_latency" in res:
        latency_of[name] = (par, res["avg_latency"])
    if name.startswith("prefill"):
        flops = prefill_flops(par["batch_size"], par["input_len"])
        rows.append((f"celer {name}", f"{res['avg_latency']:.3f} s", f"{flops / res['avg_latency'] / 1e12:.0f} TFLOP/s",
                     f"{flops / res['avg_latency'] / 1e12 / gemm:.0%} of the {gemm:.0f} TFLOP/s GEMM ceiling" if gemm else ""))
        summary.setdefault("derived", {})[name] = {"model_tflops": flops / 1e12, "tflop_per_s": flops / res["avg_latency"] / 1e12}
    elif name.startswith("context") and name.endswith("-out129"):
        continue
    elif name.startswith("context") and name.endswith("-out1") and name[:-1] + "129" in [os.path.basename(p)[6:-5] for p in glob.glob(os.path.join(out, "celer-*.json"))]:
        par129 = json.load(open(os.path.join(out, f"celer-{name[:-1]}129.json")))
        t129 = par129["results"]["avg_latency"]
        b, length = par["batch_size"], par["input_len"]
        tps = b * 128 / (t129 - res["avg_latency"])
        # A decode step reads the weights once and every sequence's keys and values (bf16, or FP8) once.
        kv_element_bytes = 1 if "fp8" in name else 2
        step_bytes = weight_bytes + b * (length + 64) * layers * 2 * kv_dim * kv_element_bytes
        ceiling = b / (step_bytes / (copy_tbs * 1e12)) if copy_tbs else None
        rows.append((f"celer {name[:-5]} decode", f"{(t129 - res['avg_latency']) / 128 * 1e3:.2f} ms/step", f"{tps:.1f} out tok/s",
                     f"{tps / ceiling:.0%} of the {ceiling:.0f} tok/s bound (weights + KV)" if ceiling else ""))
        summary.setdefault("derived", {})[name[:-5]] = {"decode_tok_per_s": tps, "bound_tok_per_s": ceiling, "prefill_s": res["avg_latency"]}
    elif name.startswith("hostgap"):
        b, o = par["batch_size"], par["output_len"]
        rows.append((f"celer {name}", f"{res['avg_latency']:.2f} s", f"{b * o / res['avg_latency']:.1f} out tok/s",
                     f"GPU idle between steps {res.get('gpu_idle_share', float('nan')):.1%}"))
    elif "avg_latency" in res:
        b, o = par["batch_size"], par["output_len"]
        tps = b * o / res["avg_latency"]
        idle = f"GPU idle {res['gpu_idle_share']:.0%}" if "gpu_idle_share" in res else ""
        # The weights-over-copy bound is the 8B shape's; other models (moe-*) show their rate alone.
        if copy_tbs and not name.startswith("moe"):
            ceiling = b / floor_step_s
            idle = f"{tps / ceiling:.0%} of the {ceiling:.0f} tok/s bandwidth bound, {idle}"
        rows.append((f"celer {name}", f"{res['avg_latency']:.2f} s", f"{tps:.1f} out tok/s", idle))
    elif "median_ttft_ms" in res:
        rows.append((f"celer bench {name}", f"TTFT {res['median_ttft_ms']:.0f} ms", f"ITL {res['median_itl_ms']:.1f} ms",
                     f"median; TPOT mean {res['mean_tpot_ms']:.1f} ms, {res.get('request_throughput', 0):.1f} req/s served"))
    elif data.get("kind") == "sleep":
        for level in data["levels"]:
            given_back = (level["used_mib_awake"] - level["used_mib_asleep"]) / 1024
            rows.append((f"celer sleep level {level['level']} ({data['model']})", f"sleep {level['sleep_s']:.2f} s", f"wake-up {level['wake_up_s']:.2f} s",
                         f"{given_back:.1f} GiB given back; completion with wake-up {level['completion_with_wake_up_s']:.2f} s; "
                         f"same output: {level['same_output_after_wake_up'] and level['same_output_after_wake_on_demand']}"))
    elif data.get("kind") == "sleep-swap":
        for r in data["requests"]:
            rows.append((f"celer sleep-mode swap: request for {r['model']}", f"{r['completion_s']:.2f} s", f"{r['used_mib'] / 1024:.1f} GiB in use",
                         f"a asleep: {r['a_sleeping']}, b asleep: {r['b_sleeping']}"))
    elif data.get("kind") == "serve-startup":
        what = "safetensors in the page cache, 8B shape" if "safetensors" in data.get("name", "") else "dummy weights, 8B shape"
        rows.append((f"celer serve, start to healthy ({data.get('name', 'serve')})", f"{data['time_to_healthy_s']:.1f} s", "", what))
    elif "tokens_per_second" in res:
        idle = f", GPU idle {res['gpu_idle_share']:.0%}" if "gpu_idle_share" in res else ""
        rows.append((f"celer {name}", f"{res.get('requests_per_second', 0):.2f} req/s", f"{res.get('output_tokens_per_second', 0):.0f} out tok/s", f"{res.get('tokens_per_second', 0):.0f} total tok/s{idle}"))
attention = load(os.path.join(out, "attention-kernel.json"))
if attention:
    summary["attention_kernel"] = attention
    r, p = attention["results"], attention["parameters"]
    rows.append((f"attention alone, prefill {p['prefill']}", f"{r['prefill_seconds'] * 1e3:.2f} ms", f"{r['prefill_tflop_per_s']:.0f} TFLOP/s",
                 f"{r['prefill_tflop_per_s'] / gemm:.0%} of GEMM" if gemm else ""))
    rows.append((f"attention alone, decode {p['decode']}", f"{r['decode_seconds'] * 1e6:.0f} us", f"{r['decode_gb_per_s']:.0f} GB/s",
                 f"{r['decode_gb_per_s'] / (copy_tbs * 1e3):.0%} of copy" if copy_tbs else ""))
if hf:
    c = hf["ceilings"]
    rows.append(("card: d2d copy", f"{c['copy_tb_per_s']:.2f} TB/s", "", ""))
    rows.append(("card: bf16 GEMM 8192^3", f"{c['bf16_gemm_tflops']:.0f} TFLOP/s", "", ""))
    for g in hf["hf_generate"]:
        rows.append((f"transformers bs{g['batch_size']} {g.get('cache', 'dynamic')}", f"{g['latency_s']:.2f} s", f"{g['output_tokens_per_s']:.1f} out tok/s",
                     f"warm-up {g['warmup_s']:.0f} s" if "warmup_s" in g else ""))
json.dump(summary, open(os.path.join(out, "benchmarks-summary.json"), "w"), indent=1)
width = [max(len(r[i]) for r in rows) for i in range(4)] if rows else []
for r in rows:
    print("  ".join(v.ljust(w) for v, w in zip(r, width)))
