using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>The scales a quantized checkpoint stores beside its codes (FP8's and the integer formats' alike).</summary>
internal static class ScaleTensor
{
    /// <summary>The values in fp32, exact for the F32, BF16 and F16 tensors scales are stored as; any other dtype is refused naming the tensor.</summary>
    public static float[] Read(WeightTensor t)
    {
        if (t.DType is not (DType.F32 or DType.BF16 or DType.F16))
        {
            throw new ModelLoadException($"'{t.Name}' is {t.DType}; scales are F32, BF16 or F16");
        }

        var values = new float[t.ElementCount];
        HalfConversions.ToFloat(t.DType, t.Bytes, values);
        return values;
    }
}
