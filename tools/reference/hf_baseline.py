#!/usr/bin/env python3
"""Baselines measured in the same device call as Celer's GPU benchmarks (run by tools/gpu/run-all.sh):

- the card's ceilings: device-to-device copy bandwidth (bytes read + written) and a bf16 8192^3 GEMM;
- Hugging Face transformers on a model of the given config with random bf16 weights: `generate` latency
  at batch 1 and batch 32 (greedy, fixed input and output lengths, the default dynamic cache), and its best
  path, the static cache (which transformers compiles with torch.compile itself), at batch 1 and batch 8.

Timing: CUDA events after a warm-up, medians; inputs are random, never zeros. Writes one JSON file.
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def median_ms(fn, warmup=3, iters=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def ceilings():
    n = 4 << 30
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = median_ms(lambda: dst.copy_(src))
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    gemm_ms = median_ms(lambda: a @ b)
    del src, dst, a, b
    torch.cuda.empty_cache()
    return {"copy_tb_per_s": 2 * n / (copy_ms / 1e3) / 1e12, "bf16_gemm_tflops": 2 * 8192**3 / (gemm_ms / 1e3) / 1e12}


def hf_generate(model, vocab, batch, input_len, output_len, iters, static=False):
    torch.manual_seed(batch)
    ids = torch.randint(10, vocab - 10, (batch, input_len), device="cuda")
    kwargs = dict(max_new_tokens=output_len, min_new_tokens=output_len, do_sample=False, pad_token_id=0)
    if static:
        kwargs["cache_implementation"] = "static"
    t = time.perf_counter()
    # Warm-up (and compilation): the static cache is sized by the generation length, so it must be the timed one's,
    # or the timed run compiles again (2026-11-29 run: 4.5 tok/s at batch 1 from a recompile inside the timing).
    warm = kwargs if static else {**kwargs, "max_new_tokens": 8, "min_new_tokens": 8}
    model.generate(ids, **warm)
    warmup_s = time.perf_counter() - t
    seconds = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = model.generate(ids, **kwargs)
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t)
        assert out.shape[1] == input_len + output_len, out.shape
    s = statistics.median(seconds)
    return {"batch_size": batch, "input_len": input_len, "output_len": output_len, "latency_s": s,
            "output_tokens_per_s": batch * output_len / s, "cache": "static (compiled)" if static else "dynamic",
            "warmup_s": warmup_s}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--ceilings-only", action="store_true", help="measure the card's ceilings and the weight bytes, no generate")
    p.add_argument("--runs", default="1,32,s1,s8",
                   help="generate runs: batch sizes with the dynamic cache, s<batch> with the compiled static cache")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "transformers": transformers.__version__}
    result["ceilings"] = ceilings()
    print("ceilings", result["ceilings"], flush=True)

    config = AutoConfig.from_pretrained(args.config)
    torch.manual_seed(0)
    t = time.perf_counter()
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.eval()
    print(f"model built in {time.perf_counter() - t:.1f}s", flush=True)
    result["weight_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    result["hf_generate"] = []
    runs = [] if args.ceilings_only else [(int(r.lstrip("s")), r.startswith("s")) for r in args.runs.split(",")]
    with torch.inference_mode():
        for batch, static in runs:
            try:
                result["hf_generate"].append(hf_generate(model, config.vocab_size, batch, args.input_len, args.output_len, iters=1, static=static))
                print(result["hf_generate"][-1], flush=True)
            except Exception as e:  # the compiled path may fail on a new stack; keep what did run
                result.setdefault("errors", []).append(f"batch {batch} static={static}: {e!r}"[:2000])
                print("failed:", result["errors"][-1], flush=True)
    print(json.dumps(result, indent=1), flush=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
