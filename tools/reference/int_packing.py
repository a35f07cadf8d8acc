"""Integer weight-only quantization (round to nearest, no calibration) packed the way each public format stores it.

Written from the formats' definitions, not from their tools' code:
  * GPTQ (AutoGPTQ / GPTQModel / Optimum): qweight int32 [in / pack, out], codes packed along the input with the first
    in the lowest bits; qzeros int32 [groups, out / pack] packed along the output, stored minus one in the original
    "gptq" checkpoint format (not in "gptq_v2"); scales fp16 [groups, out]; g_idx int32 [in], each input column's group
    (act-order: columns are quantized in a permuted order, so groups are scattered).
  * AWQ GEMM (AutoAWQ): qweight int32 [in, out / 8] and qzeros int32 [groups, out / 8] packed along the output in the
    interleaved order 0, 2, 4, 6, 1, 3, 5, 7 (nibble p holds column AWQ_ORDER[p] of its eight); scales fp16 [groups, out].
  * compressed-tensors pack-quantized (llm-compressor W4A16 / W8A16): signed codes offset by 2^(bits-1) to unsigned,
    weight_packed int32 [out, in / pack] along the input; weight_zero_point likewise offset, int32 [out / pack, groups]
    packed along the output (asymmetric only); weight_scale [out, groups]; weight_g_idx int32 [in] (actorder "group");
    weight_shape int64 [2].

Each function takes an fp32 [out, in] weight (on any device; the stored tensors come back on it) and returns
({tensor suffix: stored tensor}, dequantized fp32 weight): (code - zero) * scale with the scale as stored, which is
exact in fp32.
"""

import torch

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def to_int32(words):
    """int64 words holding 32 bits -> the int32 tensor with the same bits."""
    return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)


def pack(values, bits, dim, order=None):
    """Packs non-negative codes (< 2^bits) along dim, 32 / bits per int32, entry p of each word from position
    order[p] (default p) of its run, at bits * p."""
    per_word = 32 // bits
    values = values.to(torch.int64).movedim(dim, -1)
    length = values.shape[-1]
    padded = -(-length // per_word) * per_word
    values = torch.nn.functional.pad(values, (0, padded - length))
    runs = values.reshape(*values.shape[:-1], padded // per_word, per_word)
    order = order or tuple(range(per_word))
    words = sum(runs[..., order[p]] << (bits * p) for p in range(per_word))
    return to_int32(words).movedim(-1, dim).contiguous()


def group_index(columns, group_size, permutation):
    """Each column's group: runs of group_size columns in the order the permutation visits them (act-order), or in
    column order (permutation None). group_size None: one group."""
    if group_size is None:
        return torch.zeros(columns, dtype=torch.int32)
    order = permutation if permutation is not None else torch.arange(columns)
    g_idx = torch.empty(columns, dtype=torch.int32)
    g_idx[order] = (torch.arange(columns) // group_size).to(torch.int32)
    return g_idx


def min_max_params(weight, g_idx, groups, maxq, symmetric, scale_dtype):
    """Per (row, group) scale (rounded to scale_dtype) and integer zero point from the group's min and max, both
    widened to include 0 as GPTQ's quantizer does; symmetric: zero in the middle of the code range."""
    rows = weight.shape[0]
    scales = torch.empty(rows, groups, device=weight.device)
    zeros = torch.empty(rows, groups, dtype=torch.int64, device=weight.device)
    for g in range(groups):
        part = weight[:, g_idx == g]
        low = part.min(dim=1).values.clamp(max=0)
        high = part.max(dim=1).values.clamp(min=0)
        if symmetric:
            high = torch.maximum(high, -low)
            scale = 2 * high / maxq
            zero = torch.full((rows,), (maxq + 1) // 2, dtype=torch.int64, device=weight.device)
        else:
            scale = (high - low) / maxq
            zero = None
        scale = torch.where(scale > 0, scale, torch.ones_like(scale)).to(scale_dtype).float()
        if zero is None:
            zero = torch.round(-low / scale).clamp(0, maxq).to(torch.int64)
        scales[:, g], zeros[:, g] = scale, zero
    return scales, zeros


def quantize(weight, g_idx, scales, zeros, maxq):
    """Unsigned codes clamp(round(w / s) + z) and the dequantized weight (code - z) * s, per column's group."""
    s = scales[:, g_idx.long()]
    z = zeros[:, g_idx.long()]
    codes = (torch.round(weight / s) + z).clamp(0, maxq).to(torch.int64)
    return codes, (codes - z).float() * s


def round_to_nearest(weight, bits, group_size, act_order, symmetric, scale_dtype, generator):
    """(g_idx, scales, zeros, codes, dequantized fp32 weight) of one [out, in] weight: groups of group_size
    columns in column order or, with act_order, over a random permutation of them."""
    columns = weight.shape[1]
    maxq = 2 ** bits - 1
    permutation = torch.randperm(columns, generator=generator) if act_order else None
    g_idx = group_index(columns, group_size, permutation).to(weight.device)
    groups = int(g_idx.max()) + 1
    scales, zeros = min_max_params(weight, g_idx, groups, maxq, symmetric, scale_dtype)
    codes, dequantized = quantize(weight, g_idx, scales, zeros, maxq)
    return g_idx, scales, zeros, codes, dequantized


def gptq(weight, bits, group_size, act_order, symmetric, minus_one, generator):
    g_idx, scales, zeros, codes, dequantized = round_to_nearest(
        weight, bits, group_size, act_order, symmetric, torch.float16, generator)
    stored_zeros = (zeros.t() - (1 if minus_one else 0)) & (2 ** bits - 1)
    return {
        "qweight": pack(codes.t(), bits, dim=0),
        "qzeros": pack(stored_zeros, bits, dim=1),
        "scales": scales.t().to(torch.float16).contiguous(),
        "g_idx": g_idx,
    }, dequantized


def awq(weight, group_size):
    _, scales, zeros, codes, dequantized = round_to_nearest(weight, 4, group_size, False, False, torch.float16, None)
    return {
        "qweight": pack(codes.t(), 4, dim=1, order=AWQ_ORDER),
        "qzeros": pack(zeros.t(), 4, dim=1, order=AWQ_ORDER),
        "scales": scales.t().to(torch.float16).contiguous(),
    }, dequantized


def compressed_tensors_packed(weight, bits, group_size, act_order, symmetric, generator):
    g_idx, scales, zeros, codes, dequantized = round_to_nearest(
        weight, bits, group_size, act_order, symmetric, torch.bfloat16, generator)
    # Unsigned codes here are the signed ones plus 2^(bits-1): exactly what pack-quantized stores.
    tensors = {
        "weight_packed": pack(codes, bits, dim=1),
        "weight_scale": scales.to(torch.bfloat16).contiguous(),
        "weight_shape": torch.tensor(list(weight.shape), dtype=torch.int64, device=weight.device),
    }
    if not symmetric:
        tensors["weight_zero_point"] = pack(zeros, bits, dim=0)
    if act_order:
        tensors["weight_g_idx"] = g_idx
    return tensors, dequantized
