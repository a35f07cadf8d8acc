#!/usr/bin/env python3
"""Writes a Llama-family or Qwen3 (dense or MoE) checkpoint of random bf16 weights for a config.json, laid out as transformers saves one
(model-0000i-of-0000n.safetensors shards of at most 5 GB and model.safetensors.index.json), to time Celer's cold
start from safetensors. The values come from the GPU's generator: a host generator would take minutes for 16 GB.

    python3 tools/gpu/write_checkpoint.py benchmarks/models/llama-3.1-8b-shape /tmp/ckpt-8b [--fp8 channel|block] [--int4 gptq|awq]

--fp8 quantizes the attention and MLP projections (a MoE model's experts too, not its routers) to E4M3 as the public
FP8 checkpoints store them, for benchmarks of the FP8 GEMMs: "channel" as llm-compressor's FP8_DYNAMIC scheme (compressed-tensors, a bf16 weight_scale per output
row, inputs dynamic per token; RedHatAI's Llama-3.1-8B-Instruct-FP8-dynamic), "block" as DeepSeek-V3 / Qwen3-FP8
(quant_method fp8, weight_scale_inv per 128 x 128 block, inputs dynamic per token group of 128; Qwen3-30B-A3B-FP8's
layout for a qwen3_moe config: experts.N.gate_proj / up_proj / down_proj, the router mlp.gate in bf16).

--int4 packs them as 4-bit weight-only checkpoints in groups of 128 (tools/reference/int_packing.py, round to nearest):
"gptq" symmetric with desc_act false (the layout of most published GPTQ models), "awq" with zero points (AutoAWQ GEMM).
"""
import argparse
import json
import os
import shutil

import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import int_packing  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("src")
parser.add_argument("out")
quantization = parser.add_mutually_exclusive_group()
quantization.add_argument("--fp8", choices=["channel", "block"])
quantization.add_argument("--int4", choices=["gptq", "awq"])
args = parser.parse_args()
src, out = args.src, args.out
cfg = json.load(open(os.path.join(src, "config.json")))
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BLOCK = 128


def fp8(name, w):
    """{name: E4M3 codes, scale name: scales} for a [out, in] fp32 weight on the GPU."""
    module = name[: -len(".weight")]
    if args.fp8 == "channel":
        scale = (w.abs().amax(dim=1, keepdim=True) / 448).to(torch.bfloat16)
        return {name: (w / scale.float()).clamp(-448, 448).to(torch.float8_e4m3fn), module + ".weight_scale": scale}
    rows, cols = w.shape
    padded = torch.zeros(-(-rows // BLOCK) * BLOCK, -(-cols // BLOCK) * BLOCK, device=w.device)
    padded[:rows, :cols] = w.abs()
    scale = padded.view(padded.shape[0] // BLOCK, BLOCK, padded.shape[1] // BLOCK, BLOCK).amax(dim=(1, 3)) / 448
    expanded = scale.repeat_interleave(BLOCK, dim=0).repeat_interleave(BLOCK, dim=1)[:rows, :cols]
    return {name: (w / expanded).clamp(-448, 448).to(torch.float8_e4m3fn), module + ".weight_scale_inv": scale}


def int4(name, w):
    """The stored tensors of a [out, in] fp32 weight on the GPU in the --int4 format, groups of 128."""
    module = name[: -len(".weight")]
    if args.int4 == "gptq":
        stored, _ = int_packing.gptq(w, 4, BLOCK, act_order=False, symmetric=True, minus_one=True, generator=None)
    else:
        stored, _ = int_packing.awq(w, BLOCK)
    return {f"{module}.{suffix}": t for suffix, t in stored.items()}


def quantization_config():
    if args.int4 == "gptq":
        return {"quant_method": "gptq", "bits": 4, "group_size": BLOCK, "desc_act": False, "sym": True,
                "checkpoint_format": "gptq", "lm_head": False}
    if args.int4 == "awq":
        return {"quant_method": "awq", "bits": 4, "group_size": BLOCK, "zero_point": True, "version": "gemm"}
    if args.fp8 == "block":
        return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [BLOCK, BLOCK]}
    scheme = {"num_bits": 8, "type": "float", "symmetric": True, "group_size": None, "block_structure": None, "actorder": None}
    return {"quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], "format": "float-quantized", "output_activations": None,
                                          "weights": scheme | {"strategy": "channel", "dynamic": False, "observer": "minmax"},
                                          "input_activations": scheme | {"strategy": "token", "dynamic": True, "observer": None}}},
            "ignore": ["lm_head"]}


hidden, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
heads, kv_heads, vocab = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
head_dim = cfg.get("head_dim") or hidden // heads
experts, moe_inter = cfg.get("num_experts", 0), cfg.get("moe_intermediate_size", 0)

shapes = {"model.embed_tokens.weight": (vocab, hidden)}
for i in range(layers):
    p = f"model.layers.{i}."
    shapes |= {
        p + "self_attn.q_proj.weight": (heads * head_dim, hidden),
        p + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
        p + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
        p + "self_attn.o_proj.weight": (hidden, heads * head_dim),
        p + "input_layernorm.weight": (hidden,),
        p + "post_attention_layernorm.weight": (hidden,),
    }
    if cfg["model_type"].startswith("qwen3"):
        shapes |= {p + "self_attn.q_norm.weight": (head_dim,), p + "self_attn.k_norm.weight": (head_dim,)}
    if experts and i not in cfg.get("mlp_only_layers", []):
        shapes[p + "mlp.gate.weight"] = (experts, hidden)
        for e in range(experts):
            shapes |= {
                f"{p}mlp.experts.{e}.gate_proj.weight": (moe_inter, hidden),
                f"{p}mlp.experts.{e}.up_proj.weight": (moe_inter, hidden),
                f"{p}mlp.experts.{e}.down_proj.weight": (hidden, moe_inter),
            }
    else:
        shapes |= {
            p + "mlp.gate_proj.weight": (inter, hidden),
            p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
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
    if args.fp8 and name.rsplit(".", 2)[-2] in PROJECTIONS:
        tensors = fp8(name, t)
    elif args.int4 and name.rsplit(".", 2)[-2] in PROJECTIONS:
        tensors = int4(name, t)
    else:
        tensors = {name: t.to(torch.bfloat16)}
    for tensor_name, tensor in tensors.items():
        current[tensor_name] = tensor.contiguous().cpu()
        size += tensor.numel() * tensor.element_size()
shards.append(current)

weight_map, total = {}, 0
for i, shard in enumerate(shards, 1):
    file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
    save_file(shard, os.path.join(out, file), metadata={"format": "pt"})
    for name, t in shard.items():
        weight_map[name] = file
        total += t.numel() * t.element_size()
json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=2)
if args.fp8 or args.int4:
    json.dump(cfg | {"quantization_config": quantization_config()}, open(os.path.join(out, "config.json"), "w"), indent=2)
else:
    shutil.copy(os.path.join(src, "config.json"), out)
print(f"wrote {len(shapes)} tensors, {total / 2**30:.2f} GiB in {len(shards)} shards to {out}")
