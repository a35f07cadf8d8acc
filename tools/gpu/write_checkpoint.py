#!/usr/bin/env python3
"""Writes a Llama-family checkpoint of random bf16 weights for a config.json, laid out as transformers saves one
(model-0000i-of-0000n.safetensors shards of at most 5 GB and model.safetensors.index.json), to time Celer's cold
start from safetensors. The values come from the GPU's generator: a host generator would take minutes for 16 GB.

    python3 tools/gpu/write_checkpoint.py benchmarks/models/llama-3.1-8b-shape /tmp/ckpt-8b
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

src, out = sys.argv[1], sys.argv[2]
cfg = json.load(open(os.path.join(src, "config.json")))
hidden, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
heads, kv_heads, vocab = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
head_dim = cfg.get("head_dim") or hidden // heads

shapes = {"model.embed_tokens.weight": (vocab, hidden)}
for i in range(layers):
    p = f"model.layers.{i}."
    shapes |= {
        p + "self_attn.q_proj.weight": (heads * head_dim, hidden),
        p + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
        p + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
        p + "self_attn.o_proj.weight": (hidden, heads * head_dim),
        p + "mlp.gate_proj.weight": (inter, hidden),
        p + "mlp.up_proj.weight": (inter, hidden),
        p + "mlp.down_proj.weight": (hidden, inter),
        p + "input_layernorm.weight": (hidden,),
        p + "post_attention_layernorm.weight": (hidden,),
    }
shapes["model.norm.weight"] = (hidden,)
if not cfg.get("tie_word_embeddings", False):
    shapes["lm_head.weight"] = (vocab, hidden)

os.makedirs(out, exist_ok=True)
generator = torch.Generator(device="cuda").manual_seed(0)
shards, current, size = [], {}, 0
for name, shape in shapes.items():
    numel = 1
    for d in shape:
        numel *= d
    if current and size + 2 * numel > 5 * 10**9:
        shards.append(current)
        current, size = {}, 0
    # Norm weights near 1 and matrices at 0.02 scale, as a trained model roughly has them.
    t = torch.randn(shape, generator=generator, device="cuda", dtype=torch.float32)
    t = (1 + 0.1 * t) if len(shape) == 1 else 0.02 * t
    current[name] = t.to(torch.bfloat16).cpu()
    size += 2 * numel
shards.append(current)

weight_map, total = {}, 0
for i, shard in enumerate(shards, 1):
    file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
    save_file(shard, os.path.join(out, file), metadata={"format": "pt"})
    for name, t in shard.items():
        weight_map[name] = file
        total += t.numel() * 2
json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=2)
shutil.copy(os.path.join(src, "config.json"), out)
print(f"wrote {len(shapes)} tensors, {total / 2**30:.2f} GiB in {len(shards)} shards to {out}")
