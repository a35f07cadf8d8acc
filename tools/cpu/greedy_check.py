#!/usr/bin/env python3
"""Checks that Celer and llama.cpp run the same model: each prompt is tokenized by both servers (the ids must be
equal: the GGUF's tokenizer is the checkpoint's), then both generate greedily from the same prompt ids, end of
sequence ignored, and the generated ids must be equal token for token. Exits 1 naming the first difference.

    greedy_check.py --celer CELER --model DIR --gguf FILE --llama-bin DIR --logs DIR --out FILE [--tokens 32]
                    [--tie-logprob 0]

With --tie-logprob T > 0 a difference is accepted where it is a near tie: each engine's token is in the other's top
5 and each engine ranks the two within T of each other (the outputs part there, so nothing after it is compared).
That is for random-weight models, whose flat distributions make such ties, and which two engines with different
rounding (llama.cpp's bf16 activations, Celer's fp32) may break differently; a trained model should use 0.

The servers run one after the other, so neither slows the other down on a small machine.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import Celer, LlamaServer  # noqa: E402

TOP = 5

# Code prompts: the default model is trained on Python sources; for a random-weight model any text does.
PROMPTS = [
    "def fibonacci(n):",
    "import os\nimport sys\n\n\nclass Config:\n    def __init__(self, path):\n",
    "    for key, value in sorted(items.items()):\n        if value is None:",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--celer", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--llama-bin", required=True)
    parser.add_argument("--logs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--tie-logprob", type=float, default=0.0,
                        help="a difference is accepted only where both engines rank the two tokens within this "
                             "logprob of each other (a near tie that rounding decides); 0: outputs must be identical")
    args = parser.parse_args()

    env = dict(os.environ, DOTNET_PROCESSOR_COUNT=str(args.threads))
    celer = Celer(args.celer, args.model, args.max_model_len, os.path.join(args.logs, "greedy-celer.log"), env)
    with celer.run():
        prompt_ids = [celer.tokenize(p) for p in PROMPTS]
        celer_out = [celer.greedy(ids, args.tokens, TOP) for ids in prompt_ids]
    llama = LlamaServer(args.llama_bin, args.gguf, args.max_model_len, args.threads,
                        os.path.join(args.logs, "greedy-llama-server.log"))
    with llama.run():
        llama_prompt_ids = [llama.tokenize(p) for p in PROMPTS]
        llama_out = [llama.greedy(ids, args.tokens, TOP) for ids in prompt_ids]

    cases, failures = [], []
    for text, ids, llama_ids, (a, a_top), (b, b_top) in zip(PROMPTS, prompt_ids, llama_prompt_ids, celer_out, llama_out):
        case = {"prompt": text, "prompt_token_ids": ids, "llama_cpp_prompt_token_ids": llama_ids,
                "celer_output_ids": a, "llama_cpp_output_ids": b, "identical": ids == llama_ids and a == b}
        cases.append(case)
        if ids != llama_ids:
            failures.append(f"prompt {text!r}: Celer tokenizes it as {ids}, llama.cpp as {llama_ids}")
        if len(a) != args.tokens or len(b) != args.tokens:
            failures.append(f"prompt {text!r}: {len(a)} tokens from Celer, {len(b)} from llama.cpp, {args.tokens} asked")
            continue
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if first is None:
            continue
        # Each engine's margin between its own choice and the other's there (None: not in its top TOP).
        celer_margin = a_top[first][a[first]] - a_top[first][b[first]] if b[first] in a_top[first] else None
        llama_margin = b_top[first][b[first]] - b_top[first][a[first]] if a[first] in b_top[first] else None
        case["first_difference"] = {"step": first, "celer_margin": celer_margin, "llama_cpp_margin": llama_margin}
        near_tie = (celer_margin is not None and llama_margin is not None
                    and max(celer_margin, llama_margin) <= args.tie_logprob)
        case["near_tie"] = near_tie
        if not near_tie:
            failures.append(f"prompt {text!r}: greedy outputs differ from token {first} (margins: Celer {celer_margin}, "
                            f"llama.cpp {llama_margin}, allowed {args.tie_logprob}):\n  Celer     {a}\n  llama.cpp {b}")
    with open(args.out, "w") as f:
        json.dump({"tokens": args.tokens, "tie_logprob": args.tie_logprob, "cases": cases}, f, indent=1)
    if failures:
        print("greedy check FAILED for " + args.model + ":\n" + "\n".join(failures), file=sys.stderr)
        sys.exit(1)
    ties = [c["first_difference"]["step"] for c in cases if "first_difference" in c]
    print(f"greedy check: {len(PROMPTS)} prompts x {args.tokens} tokens, {len(PROMPTS) - len(ties)} identical"
          + (f", {len(ties)} identical up to a near tie at step {ties}" if ties else "") + f" ({os.path.basename(args.model)})")


if __name__ == "__main__":
    main()
