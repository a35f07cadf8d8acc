#!/usr/bin/env python3
"""Writes a Llama checkpoint of seeded random bf16 weights for a config.json, with the standard library only, so
that a model shape can be converted to GGUF and run by llama.cpp as well as by Celer (whose --load-format dummy
makes weights in memory only).

    write_random_llama.py CONFIG_JSON TOKENIZER_DIR OUT_DIR [--seed 0]

OUT_DIR gets config.json, model.safetensors (bf16; no lm_head.weight when the config ties it) and the tokenizer
files of TOKENIZER_DIR, whose vocabulary must fit the config's vocab_size.

Each matrix entry is a random sign times 2^e times a random mantissa in [1, 2), e uniform in -9..-6: magnitudes
between 0.002 and 0.03, RMS about 0.014, close to transformers' normal(0, 0.02) initialisation, drawn as random
bytes with the exponent bits replaced (a Python loop per value would take an hour for 1B values). Norm weights are
1, as transformers initialises them.
"""
import argparse
import json
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_files import write_file  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json")
BF16_ONE = b"\x80\x3f"
# High byte of a little-endian bf16: sign bit, then the top 7 of the 8 exponent bits. 59 or 60 there, with the low
# exponent bit random (from the low byte), gives biased exponents 118..121, i.e. 2^-9..2^-6.
HIGH_BYTE = bytes((b & 0x80) | (59 + (b & 1)) for b in range(256))


def random_matrix(rng, count):
    def write(f):
        chunk = 1 << 22
        for start in range(0, count, chunk):
            n = min(chunk, count - start)
            values = bytearray(rng.randbytes(2 * n))
            values[1::2] = values[1::2].translate(HIGH_BYTE)
            f.write(values)
    return write


def ones(count):
    return lambda f: f.write(BF16_ONE * count)


def tensors(cfg):
    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim") or hidden // heads
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise SystemExit("write_random_llama: configs with biases are not written")
    shapes = [("model.embed_tokens.weight", [cfg["vocab_size"], hidden])]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes += [
            (p + "input_layernorm.weight", [hidden]),
            (p + "self_attn.q_proj.weight", [heads * head_dim, hidden]),
            (p + "self_attn.k_proj.weight", [kv_heads * head_dim, hidden]),
            (p + "self_attn.v_proj.weight", [kv_heads * head_dim, hidden]),
            (p + "self_attn.o_proj.weight", [hidden, heads * head_dim]),
            (p + "post_attention_layernorm.weight", [hidden]),
            (p + "mlp.gate_proj.weight", [inter, hidden]),
            (p + "mlp.up_proj.weight", [inter, hidden]),
            (p + "mlp.down_proj.weight", [hidden, inter]),
        ]
    shapes.append(("model.norm.weight", [hidden]))
    if not cfg.get("tie_word_embeddings", False):
        shapes.append(("lm_head.weight", [cfg["vocab_size"], hidden]))
    return shapes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("tokenizer_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.config) as f:
        cfg = json.load(f)
    with open(os.path.join(args.tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
        tokenizer = json.load(f)
    ids = list(tokenizer["model"]["vocab"].values()) + [t["id"] for t in tokenizer.get("added_tokens", [])]
    if max(ids) >= cfg["vocab_size"]:
        raise SystemExit(f"write_random_llama: the tokenizer has id {max(ids)}, the config's vocab_size is {cfg['vocab_size']}")

    os.makedirs(args.out_dir, exist_ok=True)
    rng = random.Random(args.seed)
    entries = []
    for name, shape in tensors(cfg):
        count = 1
        for d in shape:
            count *= d
        entries.append((name, "BF16", shape, ones(count) if len(shape) == 1 else random_matrix(rng, count)))
    write_file(os.path.join(args.out_dir, "model.safetensors"), entries, {"format": "pt"})
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(args.tokenizer_dir, name)):
            shutil.copyfile(os.path.join(args.tokenizer_dir, name), os.path.join(args.out_dir, name))


if __name__ == "__main__":
    main()
