using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>The scales a quantized checkpoint stores beside its codes (FP8's and the integer formats' alike).</summary>
internal static class ScaleTensor
{
    /// <summary>The values in fp32, exact for the F32, BF16 and F16 tensors scales are stored as; any other dtype is refused naming the tensor.</summary>
    public static float[] Read(WeightTensor t) => t.ToFloats("scales");
}
