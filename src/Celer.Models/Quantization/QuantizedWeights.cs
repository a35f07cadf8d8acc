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
    /// The checkpoint's weights as a model reads them: as stored when <paramref name="quantization"/> is null; integer
    /// weight-only formats dequantized (<see cref="IntWeightSource"/>); FP8 dequantized, or kept in FP8 with their scales
    /// (<paramref name="keepFp8"/>, W8A8 on a backend with FP8 GEMMs: <see cref="Fp8WeightSource"/>).
    /// </summary>
    public static IWeightSource Wrap(IWeightSource source, QuantizationConfig? quantization, bool keepFp8 = false) => quantization switch
    {
        null => source,
        { IntWeights: not null } => new IntWeightSource(source, quantization),
        _ => new Fp8WeightSource(source, quantization, keepFp8),
    };
}
