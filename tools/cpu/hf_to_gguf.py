#!/usr/bin/env python3
"""Converts a Hugging Face Llama checkpoint (config.json, *.safetensors, tokenizer.json with a byte-level BPE
model) to a bf16 GGUF file that llama.cpp loads, with the standard library only.

    python3 tools/cpu/hf_to_gguf.py MODEL_DIR OUT.gguf

What llama.cpp's own convert_hf_to_gguf.py writes for LlamaForCausalLM, written here from its definition:
- the llama.* hyperparameters (context, embedding and feed-forward lengths, block count, head counts, rope
  dimension and base, RMS epsilon, vocabulary size, key/value length when config.json gives head_dim) and
  general.file_type 32 (LLAMA_FTYPE_MOSTLY_BF16: matrices bf16, 1-D tensors f32);
- rope scaling: "linear" as llama.rope.scaling.{type,factor}; Llama 3's "llama3" as the rope_freqs.weight tensor of
  per-frequency divisors, computed as transformers' _compute_llama3_parameters does;
- q_proj and k_proj rows permuted from transformers' rotate-half layout (a head's first half of dimensions, then
  its second half) to the interleaved pairs llama.cpp's LLAMA rope rotates: within each head, new row 2i + j is
  old row j·(head_dim/2) + i;
- the tokenizer as tokenizer.ggml.model "gpt2": every id below vocab_size with its string ([PADn] and type
  UNUSED where the tokenizer has none), token types (special added tokens CONTROL, other added tokens
  USER_DEFINED, the rest NORMAL), merges as "left right", the pre-tokenizer's llama.cpp name, bos/eos/pad ids
  and add_bos/add_eos from tokenizer_config.json (or config.json's ids).
A tied checkpoint gets no output.weight: llama.cpp then uses token_embd.weight for the output, as transformers
does.
"""
import array
import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_writer as gw  # noqa: E402
from safetensors_files import open_checkpoint  # noqa: E402

LLAMA_FTYPE_MOSTLY_BF16 = 32
TOKEN_NORMAL, TOKEN_UNUSED, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 5, 3, 4

# tokenizer.json pre-tokenizers and the tokenizer.ggml.pre names llama.cpp (src/llama-vocab.cpp) gives their regexes.
GPT2_BYTE_LEVEL = "gpt-2"
LLAMA3_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")

LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.bias": "attn_output.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_TENSORS = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                  "lm_head.weight": "output.weight"}


def fail(message):
    raise SystemExit(f"hf_to_gguf: {message}")


def gguf_name(hf_name):
    if hf_name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[hf_name]
    parts = hf_name.split(".", 3)
    if len(parts) == 4 and parts[0] == "model" and parts[1] == "layers" and parts[2].isdigit():
        if parts[3] in LAYER_TENSORS:
            return f"blk.{parts[2]}.{LAYER_TENSORS[parts[3]]}"
    fail(f"tensor {hf_name} has no place in llama.cpp's LLAMA architecture")


def _halves(tensor):
    return (v for (v,) in struct.iter_unpack("<e", tensor.view))


def to_bf16(tensor):
    """The tensor's data as bf16 bytes (F32 rounded to nearest even, as torch's .to(bfloat16))."""
    if tensor.dtype == "BF16":
        return tensor.view
    values = array.array("I")
    if tensor.dtype == "F32":
        values.frombytes(tensor.view)
    else:
        values.frombytes(array.array("f", _halves(tensor)).tobytes())
    out = array.array("H", bytes(2 * len(values)))
    for i, u in enumerate(values):
        if (u & 0x7FFFFFFF) > 0x7F800000:
            out[i] = (u >> 16) | 0x40  # NaN stays a quiet NaN
        else:
            out[i] = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return memoryview(out).cast("B")


def to_f32(tensor):
    if tensor.dtype == "F32":
        return tensor.view
    if tensor.dtype == "F16":
        return memoryview(array.array("f", _halves(tensor)).tobytes())
    bits = array.array("H")
    bits.frombytes(tensor.view)
    return memoryview(array.array("I", (b << 16 for b in bits))).cast("B")


def rope_rows_permutation(rows, head_dim):
    """Source row for each destination row: transformers' rotate-half layout to llama.cpp's interleaved pairs."""
    half = head_dim // 2
    order = []
    for head_start in range(0, rows, head_dim):
        for i in range(half):
            order += [head_start + i, head_start + half + i]
    return order


def row_writer(data, rows, order):
    row_bytes = len(data) // rows

    def write(f):
        if order is None:
            f.write(data)
        else:
            for r in order:
                f.write(data[r * row_bytes:(r + 1) * row_bytes])
    return write


def rope_config(cfg):
    """(theta, scaling dict or None) from a transformers 4.x (rope_theta, rope_scaling) or 5.x (rope_parameters)
    config."""
    params = cfg.get("rope_parameters")
    if params is not None:
        theta = params.get("rope_theta", 10000.0)
        kind = params.get("rope_type", params.get("type", "default"))
        return theta, None if kind == "default" else dict(params, rope_type=kind)
    scaling = cfg.get("rope_scaling")
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        scaling = None if kind == "default" else dict(scaling, rope_type=kind)
    return cfg.get("rope_theta", 10000.0), scaling


def llama3_rope_factors(theta, head_dim, scaling):
    factor = scaling["factor"]
    low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    original = scaling.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = original / low, original / high
    factors = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * theta ** (i / head_dim)
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return factors


def pre_tokenizer_name(tokenizer):
    pre = tokenizer.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False):
        return GPT2_BYTE_LEVEL
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers", [])
        if (len(steps) == 2 and steps[0].get("type") == "Split" and steps[0].get("pattern", {}).get("Regex") == LLAMA3_SPLIT
                and steps[1].get("type") == "ByteLevel" and not steps[1].get("use_regex", True)):
            return "llama-bpe"
    fail(f"pre-tokenizer {json.dumps(pre)[:200]} is not one this converter maps to a llama.cpp name "
         "(GPT-2's ByteLevel regex, or Llama 3's Split + ByteLevel)")


def add_tokenizer(writer, model_dir, cfg):
    with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
        tokenizer = json.load(f)
    model = tokenizer["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        fail("tokenizer.json must hold a byte-level BPE model (tokenizer.ggml.model gpt2)")
    vocab_size = cfg["vocab_size"]
    strings = {i: s for s, i in model["vocab"].items()}
    added = {t["id"]: t for t in tokenizer.get("added_tokens", [])}
    for i, t in added.items():
        strings[i] = t["content"]
    if max(strings) >= vocab_size:
        fail(f"the tokenizer has id {max(strings)}, config.json's vocab_size is {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in strings:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
            continue
        token = strings[i]
        tokens.append(token)
        if i not in added:
            types.append(TOKEN_NORMAL)
        elif added[i].get("special") or (token.startswith("<|") and token.endswith("|>")):
            types.append(TOKEN_CONTROL)
        else:
            types.append(TOKEN_USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    writer.add("tokenizer.ggml.model", gw.STRING, "gpt2")
    writer.add("tokenizer.ggml.pre", gw.STRING, pre_tokenizer_name(tokenizer))
    writer.add_array("tokenizer.ggml.tokens", gw.STRING, tokens)
    writer.add_array("tokenizer.ggml.token_type", gw.INT32, types)
    writer.add_array("tokenizer.ggml.merges", gw.STRING, merges)

    tokenizer_config = {}
    path = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            tokenizer_config = json.load(f)
    ids = {s: i for i, s in strings.items()}
    for kind in ("bos", "eos", "unk", "pad"):
        token = tokenizer_config.get(f"{kind}_token")
        if isinstance(token, dict):
            token = token.get("content")
        token_id = ids.get(token) if isinstance(token, str) else None
        if token_id is None and isinstance(cfg.get(f"{kind}_token_id"), int):
            token_id = cfg[f"{kind}_token_id"]
        if token_id is not None:
            writer.add(f"tokenizer.ggml.{kind}_token_id", gw.UINT32, token_id)
    for kind in ("bos", "eos"):
        if isinstance(tokenizer_config.get(f"add_{kind}_token"), bool):
            writer.add(f"tokenizer.ggml.add_{kind}_token", gw.BOOL, tokenizer_config[f"add_{kind}_token"])


def convert(model_dir, out_path):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "llama" and "LlamaForCausalLM" not in cfg.get("architectures", []):
        fail(f"{model_dir} is not a Llama checkpoint (model_type {cfg.get('model_type')!r})")
    if cfg.get("mlp_bias"):
        fail("mlp_bias is not converted (llama.cpp's LLAMA architecture reads no MLP biases)")
    n_head = cfg["num_attention_heads"]
    n_head_kv = cfg.get("num_key_value_heads", n_head)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head

    writer = gw.GgufWriter()
    writer.add("general.architecture", gw.STRING, "llama")
    writer.add("general.name", gw.STRING, os.path.basename(os.path.normpath(model_dir)))
    writer.add("llama.block_count", gw.UINT32, cfg["num_hidden_layers"])
    writer.add("llama.context_length", gw.UINT32, cfg["max_position_embeddings"])
    writer.add("llama.embedding_length", gw.UINT32, cfg["hidden_size"])
    writer.add("llama.feed_forward_length", gw.UINT32, cfg["intermediate_size"])
    writer.add("llama.attention.head_count", gw.UINT32, n_head)
    writer.add("llama.attention.head_count_kv", gw.UINT32, n_head_kv)
    theta, scaling = rope_config(cfg)
    writer.add("llama.rope.freq_base", gw.FLOAT32, theta)
    writer.add("llama.attention.layer_norm_rms_epsilon", gw.FLOAT32, cfg.get("rms_norm_eps", 1e-6))
    if "head_dim" in cfg:
        writer.add("llama.attention.key_length", gw.UINT32, head_dim)
        writer.add("llama.attention.value_length", gw.UINT32, head_dim)
    writer.add("general.file_type", gw.UINT32, LLAMA_FTYPE_MOSTLY_BF16)
    writer.add("llama.vocab_size", gw.UINT32, cfg["vocab_size"])
    writer.add("llama.rope.dimension_count", gw.UINT32, head_dim)
    if scaling is not None:
        if scaling["rope_type"] == "linear":
            writer.add("llama.rope.scaling.type", gw.STRING, "linear")
            writer.add("llama.rope.scaling.factor", gw.FLOAT32, scaling["factor"])
        elif scaling["rope_type"] == "llama3":
            factors = llama3_rope_factors(theta, head_dim, scaling)
            writer.add_tensor("rope_freqs.weight", [len(factors)], gw.GGML_F32,
                              lambda f, b=array.array("f", factors).tobytes(): f.write(b))
        else:
            fail(f"rope scaling {scaling['rope_type']!r} is not converted (default, linear and llama3 are)")
    add_tokenizer(writer, model_dir, cfg)

    for name, tensor in sorted(open_checkpoint(model_dir).items()):
        if name.endswith("rotary_emb.inv_freq"):
            continue
        target = gguf_name(name)
        if len(tensor.shape) == 1 and not target.endswith((".attn_q.bias", ".attn_k.bias")):
            writer.add_tensor(target, tensor.shape, gw.GGML_F32, row_writer(to_f32(tensor), 1, None))
            continue
        rows = tensor.shape[0]
        order = None
        if target.endswith((".attn_q.weight", ".attn_q.bias", ".attn_k.weight", ".attn_k.bias")):
            order = rope_rows_permutation(rows, head_dim)
        data = to_bf16(tensor) if len(tensor.shape) == 2 else to_f32(tensor)
        writer.add_tensor(target, tensor.shape, gw.GGML_BF16 if len(tensor.shape) == 2 else gw.GGML_F32,
                          row_writer(data, rows, order))
    writer.write(out_path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    convert(sys.argv[1], sys.argv[2])
