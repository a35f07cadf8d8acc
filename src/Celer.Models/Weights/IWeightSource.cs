namespace Celer.Models.Weights;

/// <summary>Where a model's weights come from: safetensors files, or random values (<c>--load-format dummy</c>).</summary>
public interface IWeightSource : IDisposable
{
    bool Contains(string name);

    /// <summary>
    /// Returns the tensor called <paramref name="name"/> (HF checkpoint naming). When
    /// <paramref name="expectedShape"/> is given it must match exactly; otherwise a
    /// <see cref="ModelLoadException"/> names the tensor and both shapes. A missing tensor is a
    /// <see cref="ModelLoadException"/> too.
    /// </summary>
#pragma warning disable CA1716 // safetensors' own word (safe_open.get_tensor); no caller is VB
    WeightTensor Get(string name, params int[] expectedShape);
#pragma warning restore CA1716

    /// <summary>
    /// How the linear layer of <paramref name="modules"/> (stacked into one matmul when several) quantizes its input
    /// before the matmul: null for unquantized weights (every source but a quantized checkpoint's).
    /// </summary>
    Quantization.ActivationQuantization? InputQuantization(params string[] modules) => null;
}

internal static class WeightShapes
{
    public static void Check(string name, int[] actual, int[] expected)
    {
        if (expected.Length > 0 && !actual.AsSpan().SequenceEqual(expected))
        {
            throw new ModelLoadException(
                $"tensor '{name}' has shape {WeightTensor.FormatShape(actual)}, expected {WeightTensor.FormatShape(expected)}");
        }
    }

    public static ModelLoadException Missing(string name) => new($"tensor '{name}' missing");
}
