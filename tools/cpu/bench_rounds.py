#!/usr/bin/env python3
"""Times Celer and llama.cpp on the same shapes in interleaved rounds (each round runs Celer's set, then llama.cpp's,
the next round the other way round), so that slow phases of a shared machine fall on both alike, and writes the
per-round numbers, their medians and the ratios Celer / llama.cpp as JSON. Each engine's run first waits until other
processes are quiet (machine_load.py) and records the cores they used meanwhile; a round in which they used more
than --quiet-cores is kept in the JSON but left out of the medians, and another round is run in its place.

    bench_rounds.py --celer CELER --llama-bin DIR --model NAME DIR GGUF [--model ...] --out FILE --logs DIR
                    [--rounds 3] [--extra-rounds 2] [--decode-tokens 32] [--threads 2] [--quiet-cores 0.3]
                    [--celer-iters NAME:WARMUP:ITERS ...]

Shapes, the same on both sides (prefix caching off in Celer, since its benchmark repeats the same prompts):
- prefill_512: one 512-token prompt. llama.cpp: T_PP of llama-batched-bench -npp 512 -ntg 1 -npl 1. Celer: the
  median latency of `celer bench latency --batch-size 1 --input-len 512 --output-len 1` (prefill and one sample).
- decode_bs1: D decode steps of one sequence of a 16-token prompt. llama.cpp: T_TG / D of -npp 16 -ntg D -npl 1,8
  (its first row). Celer: (median latency at --input-len 16 --output-len D + 1 minus that at --output-len 1) / D.
- decode_bs8: the same with 8 sequences: the second row of that llama.cpp run; Celer at --batch-size 8.
Each is reported as tokens per second (prompt tokens for prefill, generated tokens of all sequences for decode);
ratio > 1 means Celer is faster.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_load import OthersLoad, wait_until_quiet  # noqa: E402

PREFILL = 512
BATCH = 8
DECODE_PROMPT = 16


def run(command, log, env=None):
    with open(log, "a") as f:
        f.write("$ " + " ".join(command) + "\n")
        f.flush()
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        with open(log, errors="replace") as f:
            raise SystemExit(f"{command[0]} failed ({done.returncode}); last lines of {log}:\n" + "".join(f.readlines()[-20:]))


def celer_latency(args, model_dir, batch, input_len, output_len, warmup, iters, log):
    """Median seconds of one batch end to end, and every timed iteration."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = out.name
    try:
        run(["nice", "-n", str(args.nice), args.celer, "bench", "latency", "--device", "cpu", "--model", model_dir,
             "--batch-size", str(batch), "--input-len", str(input_len), "--output-len", str(output_len),
             "--num-iters-warmup", str(warmup), "--num-iters", str(iters), "--no-enable-prefix-caching",
             "--max-model-len", str(args.max_model_len), "--output-json", path],
            log, env=dict(os.environ, DOTNET_PROCESSOR_COUNT=str(args.threads)))
        with open(path) as f:
            latencies = json.load(f)["results"]["latencies"]
    finally:
        os.unlink(path)
    return statistics.median(latencies), latencies


def llama_batched(args, gguf, npp, ntg, npls, log):
    """llama-batched-bench's result rows, one per parallel sequence count in npls."""
    context = max(npls) * (npp + ntg)
    before = os.path.getsize(log) if os.path.exists(log) else 0
    run(["nice", "-n", str(args.nice), os.path.join(args.llama_bin, "llama-batched-bench"), "-m", gguf,
         "-t", str(args.threads), "-c", str(context), "-npp", str(npp), "-ntg", str(ntg),
         "-npl", ",".join(map(str, npls)), "--output-format", "jsonl"], log)
    with open(log, errors="replace") as f:
        f.seek(before)
        rows = [json.loads(line) for line in f if line.startswith('{"n_kv_max"')]
    if [row["pl"] for row in rows] != list(npls):
        raise SystemExit(f"llama-batched-bench printed results for {[row['pl'] for row in rows]} sequences, "
                         f"expected {list(npls)} (see {log})")
    return rows


def celer_round(args, model_dir, warmup, iters, log):
    d = args.decode_tokens

    def latency(batch, input_len, output_len):
        return celer_latency(args, model_dir, batch, input_len, output_len, warmup, iters, log)

    prefill, prefill_all = latency(1, PREFILL, 1)
    # Decode rates are differences of two runs that share their prefill, so short prompts keep the prefill's
    # own noise out of them.
    start1, start1_all = latency(1, DECODE_PROMPT, 1)
    long1, long1_all = latency(1, DECODE_PROMPT, d + 1)
    start8, start8_all = latency(BATCH, DECODE_PROMPT, 1)
    long8, long8_all = latency(BATCH, DECODE_PROMPT, d + 1)
    return {
        "prefill_512": PREFILL / prefill,
        "decode_bs1": d / (long1 - start1),
        "decode_bs8": BATCH * d / (long8 - start8),
        "latencies_s": {f"bs1_in{PREFILL}_out1": prefill_all,
                        f"bs1_in{DECODE_PROMPT}_out1": start1_all, f"bs1_in{DECODE_PROMPT}_out{d + 1}": long1_all,
                        f"bs8_in{DECODE_PROMPT}_out1": start8_all, f"bs8_in{DECODE_PROMPT}_out{d + 1}": long8_all},
    }


def llama_round(args, gguf, log):
    (prefill,) = llama_batched(args, gguf, PREFILL, 1, [1], log)
    one, eight = llama_batched(args, gguf, DECODE_PROMPT, args.decode_tokens, [1, BATCH], log)
    return {
        "prefill_512": PREFILL / prefill["t_pp"],
        "decode_bs1": args.decode_tokens / one["t_tg"],
        "decode_bs8": BATCH * args.decode_tokens / eight["t_tg"],
        "batched_bench": [prefill, one, eight],
    }


SHAPES = ("decode_bs1", "prefill_512", "decode_bs8")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--celer", required=True)
    parser.add_argument("--llama-bin", required=True)
    parser.add_argument("--model", nargs=3, action="append", metavar=("NAME", "DIR", "GGUF"), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--logs", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--quiet-cores", type=float, default=0.3,
                        help="each engine's run waits until other processes use at most this many cores, and a round "
                             "in which they used more during a run is left out of the medians (unless all were)")
    parser.add_argument("--extra-rounds", type=int, default=2, help="most rounds added to replace disturbed ones")
    parser.add_argument("--quiet-timeout", type=float, default=60, help="longest wait for quiet, seconds")
    parser.add_argument("--celer-iters", action="append", default=[], metavar="NAME:WARMUP:ITERS",
                        help="Celer's warm-up and timed iterations per run for a model (default 2:3)")
    parser.add_argument("--extra", help="JSON file whose object is merged into the output (machine, commits, checks)")
    args = parser.parse_args()
    iters = {}
    for spec in args.celer_iters:
        name, warmup, timed = spec.split(":")
        iters[name] = (int(warmup), int(timed))

    results = json.load(open(args.extra)) if args.extra else {}
    results.update({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "threads": args.threads, "rounds": args.rounds, "extra_rounds": args.extra_rounds,
                    "decode_tokens": args.decode_tokens,
                    "nice": args.nice, "quiet_cores": args.quiet_cores, "shapes": {"prefill_512": "tokens/s of one 512-token prompt",
                                                   "decode_bs1": f"tokens/s, 1 sequence of a {DECODE_PROMPT}-token prompt",
                                                   "decode_bs8": f"tokens/s, {BATCH} sequences of {DECODE_PROMPT}-token prompts"},
                    "models": {}})
    for name, model_dir, gguf in args.model:
        warmup, timed = iters.get(name, (2, 3))
        log = os.path.join(args.logs, f"bench-{name}.log")
        rounds = []
        # A disturbed round is run again, up to --extra-rounds times per model, so that the medians can come from
        # --rounds clean ones.
        while sum(x["clean"] for x in rounds) < args.rounds and len(rounds) < args.rounds + args.extra_rounds:
            r = len(rounds)
            order = ["celer", "llama_cpp"] if r % 2 == 0 else ["llama_cpp", "celer"]
            entry = {"order": order}
            for engine in order:
                waited, busy = wait_until_quiet(args.quiet_cores, args.quiet_timeout)
                others = OthersLoad()
                others.start()
                started = time.monotonic()
                entry[engine] = (celer_round(args, model_dir, warmup, timed, log) if engine == "celer"
                                 else llama_round(args, gguf, log))
                entry[engine].update(wall_s=round(time.monotonic() - started, 1), others_cores=round(others.stop(), 2),
                                     quiet_wait_s=waited, others_cores_before=busy)
            entry["clean"] = all(entry[e]["others_cores"] <= args.quiet_cores for e in order)
            rounds.append(entry)
            print(f"{name} round {r + 1}: " + ", ".join(
                f"{s} {entry['celer'][s]:.1f} vs {entry['llama_cpp'][s]:.1f} tok/s" for s in SHAPES)
                + f"; others used {entry['celer']['others_cores']} / {entry['llama_cpp']['others_cores']} cores", flush=True)
        clean = [x for x in rounds if x["clean"]]
        if not clean:
            print(f"warning: no round of {name} ran with others below {args.quiet_cores} cores; medians over all rounds",
                  file=sys.stderr)
        kept = clean or rounds
        medians = {e: {s: statistics.median(x[e][s] for x in kept) for s in SHAPES} for e in ("celer", "llama_cpp")}
        results["models"][name] = {
            "celer_warmup_iters": warmup, "celer_timed_iters": timed, "rounds": rounds,
            "clean_rounds": len(clean), "median_tokens_per_s": medians,
            "ratio_celer_over_llama_cpp": {s: medians["celer"][s] / medians["llama_cpp"][s] for s in SHAPES},
            "ratio_per_round": {s: [x["celer"][s] / x["llama_cpp"][s] for x in rounds] for s in SHAPES},
        }
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print_table(results)


def print_table(results):
    print("\n| model | shape | Celer tok/s | llama.cpp tok/s | Celer / llama.cpp | per round (* disturbed) |")
    print("|---|---|---:|---:|---:|---|")
    for name, m in results["models"].items():
        for s in SHAPES:
            per_round = " ".join(f"{x:.2f}" + ("" if r["clean"] else "*")
                                 for x, r in zip(m["ratio_per_round"][s], m["rounds"]))
            print(f"| {name} | {s} | {m['median_tokens_per_s']['celer'][s]:.1f} | "
                  f"{m['median_tokens_per_s']['llama_cpp'][s]:.1f} | {m['ratio_celer_over_llama_cpp'][s]:.2f} | {per_round} |")
    kept = ", ".join(f"{n}: {m['clean_rounds']} of {len(m['rounds'])}" for n, m in results["models"].items())
    print(f"\nMedians over the rounds in which other processes stayed below {results['quiet_cores']} cores ({kept}).")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--table":
        print_table(json.load(open(sys.argv[2])))
    else:
        main()
