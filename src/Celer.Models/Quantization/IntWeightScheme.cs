namespace Celer.Models.Quantization;

/// <summary>How a format lays its integer codes, zero points and scales out in the checkpoint.</summary>
public enum IntWeightLayout
{
    /// <summary>
    /// GPTQ (AutoGPTQ, GPTQModel, Optimum): <c>qweight</c> int32 [in / pack, out], codes packed along the input, the first
    /// in the lowest bits; <c>qzeros</c> int32 [groups, out / pack] packed along the output; <c>scales</c> [groups, out];
    /// <c>g_idx</c> int32 [in], each input column's group (act-order permutes it).
    /// </summary>
    Gptq,

    /// <summary>
    /// AWQ's GEMM layout (AutoAWQ): <c>qweight</c> int32 [in, out / 8] and <c>qzeros</c> int32 [groups, out / 8] packed along
    /// the output in the interleaved order 0, 2, 4, 6, 1, 3, 5, 7 (nibble p holds column <c>AwqOrder[p]</c> of its eight);
    /// <c>scales</c> [groups, out].
    /// </summary>
    Awq,

    /// <summary>
    /// compressed-tensors <c>pack-quantized</c> (llm-compressor's W4A16 / W8A16): <c>weight_packed</c> int32 [out, in / pack]
    /// packed along the input, each code offset by 2^(bits−1) to unsigned; <c>weight_scale</c> [out, groups];
    /// <c>weight_zero_point</c> int32 [out / pack, groups] packed along the output (asymmetric only); <c>weight_g_idx</c>
    /// int32 [in] (activation order "group"); <c>weight_shape</c> int [2], the unpacked [out, in].
    /// </summary>
    CompressedTensorsPacked,

    /// <summary>
    /// compressed-tensors <c>naive-quantized</c> / <c>int-quantized</c> 8-bit weights: <c>weight</c> int8 [out, in] as
    /// quantized (signed), <c>weight_scale</c> [out, groups], <c>weight_zero_point</c> int8 [out, groups] (asymmetric only).
    /// </summary>
    CompressedTensorsInt8,
}

/// <summary>
/// The integer weight-only quantization of a checkpoint's linear layers: weight[o, i] = (code[o, i] − zero[o, g]) ·
/// scale[o, g], with g the group of input column i (<c>i / GroupSize</c>, or the stored group index with
/// <see cref="ActOrder"/>). The inputs stay in the model dtype (W4A16 / W8A16).
/// </summary>
/// <param name="GroupSize">Input columns per scale; 0: one group over all columns (per channel, GPTQ's -1).</param>
/// <param name="ActOrder">Each input column's group is stored (<c>g_idx</c>, <c>weight_g_idx</c>): GPTQ's desc_act, compressed-tensors' actorder "group".</param>
/// <param name="Symmetric">Zero points are the code range's middle, 2^(bits−1); only asymmetric compressed-tensors stores them (GPTQ and AWQ always do).</param>
/// <param name="ZerosMinusOne">GPTQ's original checkpoint format ("gptq", not "gptq_v2") stores each zero point minus one.</param>
public sealed record IntWeightScheme(IntWeightLayout Layout, int Bits, int GroupSize, bool ActOrder, bool Symmetric, bool ZerosMinusOne)
{
    /// <summary>Codes per int32 word.</summary>
    public int PackFactor => 32 / Bits;

    public override string ToString() =>
        $"{Layout} {Bits}-bit, " + (GroupSize == 0 ? "per channel" : $"groups of {GroupSize}") + (ActOrder ? ", act-order" : "") + (Symmetric ? ", symmetric" : ", asymmetric");
}
