namespace Celer.Models.Architectures;

/// <summary>
/// A small linear layer applied on the host to one vector at a time (a classifier's head, a sentence-transformers Dense
/// module after pooling): W·x + b with W as nn.Linear stores it ([out, in]), summed in double. One vector per sequence
/// is a few hundred thousand multiply-adds, far below the model's own work for it; its scores are compared to 1e-3.
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
            double sum = _bias?[o] ?? 0;
            for (int i = 0; i < x.Length; i++)
            {
                sum += (double)_weight[((long)o * InFeatures) + i] * x[i];
            }

            y[o] = sum;
        }

        return y;
    }
}
