using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.TestSupport;

/// <summary>Which FP8 fixture checkpoints round layers' inputs to FP8, the source of their looser comparisons.</summary>
public static class Fp8Fixtures
{
    /// <summary>
    /// Whether the checkpoint in <paramref name="dir"/> has W8A8 layers: input quantization in its config and an FP8
    /// weight outside the MoE experts (Celer computes FP8 experts W8A16, so a checkpoint quantized in its experts only
    /// rounds no input).
    /// </summary>
    public static bool RoundsInputs(string dir)
    {
        if (ModelConfig.Load(dir).Quantization is not { Activations: not null })
        {
            return false;
        }

        using var weights = SafetensorsWeightSource.Open(dir);
        return weights.Names.Any(name => !name.Contains(".experts.", StringComparison.Ordinal) && weights.Get(name).DType is DType.F8E4M3 or DType.F8E5M2);
    }
}
