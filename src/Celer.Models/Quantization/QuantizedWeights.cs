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
    /// dequantized, or, for a backend with kernels of its own (<paramref name="keepQuantized"/>), integer weights unpacked
    /// for it to repack (<see cref="IntWeightSource"/>) and W8A8 FP8 weights with their scales (<see cref="Fp8WeightSource"/>).
    /// </summary>
    public static IWeightSource Wrap(IWeightSource source, QuantizationConfig? quantization, bool keepQuantized = false) => quantization switch
    {
        null => source,
        { IntWeights: not null } => new IntWeightSource(source, quantization, keepQuantized),
        _ => new Fp8WeightSource(source, quantization, keepQuantized),
    };
}
