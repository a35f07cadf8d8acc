using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>The weight source a quantized checkpoint is read through, by its format.</summary>
public static class QuantizedWeights
{
    /// <summary>
    /// The dtype of weights dequantized at load: code × scale (and GPTQ / AWQ's (code − zero) × scale) is exact in fp32
    /// for the 16-bit scales most checkpoints store.
    /// </summary>
    public const DType DequantizedDType = DType.F32;

    /// <summary>
    /// The checkpoint's weights as a model reads them: as stored when <paramref name="quantization"/> is null; else
    /// dequantized, or, for a backend with kernels of its own, W8A8 FP8 weights with their scales (<paramref name="keepFp8"/>,
    /// <see cref="Fp8WeightSource"/>) and integer weights unpacked for it to repack (<paramref name="keepIntUnpacked"/>,
    /// <see cref="IntWeightSource"/>).
    /// </summary>
    public static IWeightSource Wrap(IWeightSource source, QuantizationConfig? quantization, bool keepFp8 = false, bool keepIntUnpacked = false) => quantization switch
    {
        // MXFP4 checkpoints store only gpt-oss's experts quantized, which GptOssExperts decodes from their blocks.
        null or { Method: "mxfp4" } => source,
        { IntWeights: not null } => new IntWeightSource(source, quantization, keepIntUnpacked),
        _ => new Fp8WeightSource(source, quantization, keepFp8),
    };
}
