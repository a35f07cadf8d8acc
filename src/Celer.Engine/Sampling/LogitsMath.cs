using System.Numerics;
using System.Runtime.InteropServices;

namespace Celer.Engine;

/// <summary>
/// Row kernels over one vocabulary-sized logits row (150k floats for Qwen-class vocabularies):
/// <see cref="Vector{T}"/> bodies with a scalar tail. Sums accumulate in double so that a 150k-term
/// softmax denominator keeps ~1e-12 relative error instead of fp32's ~1e-5.
/// </summary>
internal static class LogitsMath
{
    /// <summary>Largest value of the row; -inf for an empty or fully masked row. NaNs are ignored.</summary>
    public static float Max(ReadOnlySpan<float> x)
    {
        float max = float.NegativeInfinity;
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var vmax = new Vector<float>(float.NegativeInfinity);
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
            foreach (var v in vectors)
                vmax = Vector.Max(vmax, v);
            for (int lane = 0; lane < Vector<float>.Count; lane++)
                max = MathF.Max(max, vmax[lane]);
            i = vectors.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++)
        {
            if (x[i] > max)
                max = x[i];
        }
        return max;
    }

    /// <summary>Index of the largest value, the lowest index on ties (torch.argmax's rule).</summary>
    public static int ArgMax(ReadOnlySpan<float> x)
    {
        float max = Max(x);
        int index = x.IndexOf(max);
        return index < 0 ? 0 : index;
    }

    /// <summary>Σ exp(x[i] - shift), accumulated in double.</summary>
    public static double SumExp(ReadOnlySpan<float> x, float shift)
    {
        double sum = 0;
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var vshift = new Vector<float>(shift);
            var acc = Vector<double>.Zero;
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
            foreach (var v in vectors)
            {
                Vector.Widen(Vector.Exp(v - vshift), out var low, out var high);
                acc += low + high;
            }
            sum = Vector.Sum(acc);
            i = vectors.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++)
            sum += MathF.Exp(x[i] - shift);
        return sum;
    }

    /// <summary>x[i] = exp(x[i] - shift): unnormalized probabilities, the largest being 1 when shift is the max.</summary>
    public static void ExpShiftedInPlace(Span<float> x, float shift)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var vshift = new Vector<float>(shift);
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
            for (int v = 0; v < vectors.Length; v++)
                vectors[v] = Vector.Exp(vectors[v] - vshift);
            i = vectors.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++)
            x[i] = MathF.Exp(x[i] - shift);
    }

    /// <summary>x[i] /= divisor (a division, not a multiply by the reciprocal, to round as torch's div_ does).</summary>
    public static void DivideInPlace(Span<float> x, float divisor)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var vdivisor = new Vector<float>(divisor);
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
            for (int v = 0; v < vectors.Length; v++)
                vectors[v] /= vdivisor;
            i = vectors.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++)
            x[i] /= divisor;
    }

    /// <summary>Σ x[i], accumulated in double.</summary>
    public static double Sum(ReadOnlySpan<float> x)
    {
        double sum = 0;
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var acc = Vector<double>.Zero;
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
            foreach (var v in vectors)
            {
                Vector.Widen(v, out var low, out var high);
                acc += low + high;
            }
            sum = Vector.Sum(acc);
            i = vectors.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++)
            sum += x[i];
        return sum;
    }

    /// <summary>x[i] = x[i] &lt; threshold ? 0 : x[i].</summary>
    public static void ZeroBelow(Span<float> x, float threshold)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var vthreshold = new Vector<float>(threshold);
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
            for (int v = 0; v < vectors.Length; v++)
                vectors[v] = Vector.ConditionalSelect(Vector.LessThan(vectors[v], vthreshold), Vector<float>.Zero, vectors[v]);
            i = vectors.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++)
        {
            if (x[i] < threshold)
                x[i] = 0f;
        }
    }
}
