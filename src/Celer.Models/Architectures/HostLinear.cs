using System.Numerics;

namespace Celer.Models.Architectures;

/// <summary>
/// A small linear layer applied on the host to one vector at a time (a classifier's head, a sentence-transformers Dense
/// module after pooling): W·x + b with W as nn.Linear stores it ([out, in]), summed in double. One vector per sequence
/// is up to a few million multiply-adds (EmbeddingGemma's Dense modules), far below the model's own work for it; its
/// scores are compared to 1e-3.
/// </summary>
public sealed class HostLinear
{
    private readonly float[] _weight;
    private readonly float[]? _bias;

    public HostLinear(float[] weight, float[]? bias, int inFeatures, int outFeatures)
    {
        if (weight.Length != (long)inFeatures * outFeatures || (bias is not null && bias.Length != outFeatures))
        {
            throw new ArgumentException($"A {outFeatures} × {inFeatures} layer needs {(long)inFeatures * outFeatures} weights and {outFeatures} biases.", nameof(weight));
        }

        _weight = weight;
        _bias = bias;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
    }

    public int InFeatures { get; }

    public int OutFeatures { get; }

    /// <summary>The sums W·x + b in double, for the caller's activation and rounding.</summary>
    public double[] Apply(ReadOnlySpan<float> x)
    {
        if (x.Length != InFeatures)
        {
            throw new ArgumentException($"The layer takes {InFeatures} values, not {x.Length}.", nameof(x));
        }

        var y = new double[OutFeatures];
        for (int o = 0; o < y.Length; o++)
        {
            y[o] = (_bias?[o] ?? 0) + Dot(_weight.AsSpan(o * InFeatures, InFeatures), x);
        }

        return y;
    }

    /// <summary>
    /// w · x in double, a vector of floats widened at a time (EmbeddingGemma's two Dense modules are 4.7 M
    /// multiply-adds per embedding, which a scalar loop took milliseconds for).
    /// </summary>
    private static double Dot(ReadOnlySpan<float> w, ReadOnlySpan<float> x)
    {
        int i = 0;
        double sum = 0;
        if (Vector.IsHardwareAccelerated)
        {
            Vector<double> low = Vector<double>.Zero, high = Vector<double>.Zero;
            for (; i + Vector<float>.Count <= x.Length; i += Vector<float>.Count)
            {
                Vector.Widen(new Vector<float>(w[i..]), out Vector<double> wLow, out Vector<double> wHigh);
                Vector.Widen(new Vector<float>(x[i..]), out Vector<double> xLow, out Vector<double> xHigh);
                low += wLow * xLow;
                high += wHigh * xHigh;
            }

            sum = Vector.Sum(low + high);
        }

        for (; i < x.Length; i++)
        {
            sum += (double)w[i] * x[i];
        }

        return sum;
    }
}
