#!/usr/bin/env python3
"""How far transformers itself drifts from a fixture's fp32 reference when it runs in another dtype.

Usage: python3 tools/reference/dtype_drift.py [--dtype bfloat16] FIXTURE_DIR [FIXTURE_DIR ...]

For each fixture (tests/fixtures/models/<name>, with its reference.json made in fp32 by make_model_fixtures.py), runs the
same greedy loop in the given dtype (eager attention, through the KV cache) and prints, per case, the first step where
its token differs from the fp32 reference, whether each side's token is in the other's top-5 there (vLLM's criterion),
and the dtype's tokens. A fixture whose transformers run in bf16 already breaks the criterion cannot hold Celer's bf16
run to it either: that bounds what a bf16 engine test of it can check.
"""

import argparse
import json
import os

import torch
import transformers


def greedy(model, prompt, steps, device):
    ids = torch.tensor([prompt], device=device)
    out = model(input_ids=ids, use_cache=True)
    past, tokens, top5 = out.past_key_values, [], []
    logits = out.logits[0, -1].float()
    for _ in range(steps):
        top5.append(torch.topk(logits, 5).indices.tolist())
        token = int(torch.argmax(logits))
        tokens.append(token)
        out = model(input_ids=torch.tensor([[token]], device=device), past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1].float()
    return tokens, top5


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("fixtures", nargs="+")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for fixture in args.fixtures:
        reference = json.load(open(os.path.join(fixture, "reference.json")))
        model = transformers.AutoModelForCausalLM.from_pretrained(
            fixture, dtype=getattr(torch, args.dtype), attn_implementation="eager").to(device).eval()
        print(f"== {os.path.basename(fixture.rstrip('/'))} in {args.dtype}")
        with torch.no_grad():
            for i, case in enumerate(reference["cases"]):
                want = case["output_token_ids"]
                got, top5 = greedy(model, case["prompt_token_ids"], len(want), device)
                step = next((s for s in range(len(want)) if got[s] != want[s]), None)
                if step is None:
                    print(f"case {i}: {len(want)}/{len(want)} tokens equal")
                    continue
                ref_top5 = [t["token_id"] for t in case["output_logprobs"][step]["top"][:5]]
                mutual = want[step] in top5[step] and got[step] in ref_top5
                print(f"case {i}: equal for {step} steps, then {args.dtype} chose {got[step]} where fp32 chose {want[step]} "
                      f"({'inside' if mutual else 'NOT inside'} each other's top-5); {args.dtype} tokens {got}")


if __name__ == "__main__":
    main()
