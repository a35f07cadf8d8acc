#!/usr/bin/env python3
"""sentence-transformers' embedding throughput on a model shape, beside `celer bench throughput --convert embed`
in the same device call (tools/gpu/run-all.sh, stage `pooling`).

Usage: python3 tools/reference/st_embedding_baseline.py --config benchmarks/models/qwen3-0.6b-shape \
           --num-prompts 10000 --input-len 256 --out OUT.json

The model is the config's base model with random bf16 weights (no checkpoint is needed, none can be downloaded),
wrapped as sentence-transformers wraps an embedder: --pooling lasttoken (a decoder embedder such as Qwen3-Embedding) or
cls (a BERT embedder such as bge-base-en-v1.5), then normalize.
Inputs are random token ids of exactly --input-len tokens, fed through `SentenceTransformer.forward` in batches of
--batch-size (what `encode` does after tokenizing; tokenizing is left out, in Celer's favour neither way: Celer's
benchmark is given token ids too). SDPA attention, bf16, one warm-up batch; the clock covers every batch and the
copy of the embeddings to the host.
"""
import argparse
import json
import time

import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer, models


class BaseModel(torch.nn.Module):
    """What sentence-transformers' Transformer module does in forward (its constructor needs a tokenizer, which a
    random-weight shape has none of): the base model's last hidden state as the features' token embeddings."""

    def __init__(self, model):
        super().__init__()
        self.auto_model = model

    def forward(self, features):
        out = self.auto_model(input_ids=features["input_ids"], attention_mask=features["attention_mask"], return_dict=True)
        features["token_embeddings"] = out.last_hidden_state
        return features


def build(config_dir, pooling_mode):
    config = transformers.AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(0)
    base = transformers.AutoModel.from_config(config, attn_implementation="sdpa", dtype=torch.bfloat16)
    pooling = models.Pooling(config.hidden_size, pooling_mode=pooling_mode)
    return SentenceTransformer(modules=[BaseModel(base), pooling, models.Normalize()], device="cuda")


@torch.inference_mode()
def run(model, prompts, batch_size):
    outputs = []
    for first in range(0, len(prompts), batch_size):
        ids = prompts[first:first + batch_size]
        features = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        outputs.append(model.forward(features)["sentence_embedding"].float().cpu())
    return torch.cat(outputs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--num-prompts", type=int, default=10000)
    parser.add_argument("--input-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pooling", default="lasttoken", help="sentence-transformers' pooling mode: lasttoken (Qwen3-Embedding), cls (bge)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    model = build(args.config, args.pooling).eval()
    vocab = model[0].auto_model.config.vocab_size
    generator = torch.Generator(device="cuda").manual_seed(0)
    prompts = torch.randint(1, vocab, (args.num_prompts, args.input_len), generator=generator, device="cuda")
    run(model, prompts[:args.batch_size], args.batch_size)
    torch.cuda.synchronize()
    start = time.perf_counter()
    embeddings = run(model, prompts, args.batch_size)
    elapsed = time.perf_counter() - start
    result = {
        "kind": "st-embedding-throughput", "config": args.config, "num_prompts": args.num_prompts,
        "input_len": args.input_len, "batch_size": args.batch_size, "elapsed_time": elapsed,
        "requests_per_second": args.num_prompts / elapsed, "embedding_dims": embeddings.shape[1],
        "sentence_transformers_version": sentence_transformers.__version__,
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "card": torch.cuda.get_device_name(0),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"sentence-transformers: {args.num_prompts / elapsed:.1f} embeddings/s "
          f"({args.num_prompts} x {args.input_len} tokens, batch {args.batch_size}, {elapsed:.2f} s)")


if __name__ == "__main__":
    main()
