using Celer.Backends.Cpu.Kernels;
using Celer.Models.Quantization;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

/// <summary>
/// The W8A8 input quantization of FP8 checkpoints against a reference that finds each value's code by searching all
/// E4M3 values for the nearest one (ties to the even code, beyond 448 the largest), with the scales vLLM's kernels use.
/// </summary>
public sealed unsafe class Fp8ActivationsTests
{
    [Theory]
    [InlineData(ActivationScaling.DynamicPerToken, 0)]
    [InlineData(ActivationScaling.StaticPerTensor, 0)]
    [InlineData(ActivationScaling.DynamicPerTokenGroup, 32)]
    [InlineData(ActivationScaling.DynamicPerTokenGroup, 128)]
    public void Every_value_becomes_its_nearest_code_times_the_scale(ActivationScaling scaling, int group)
    {
        const int Rows = 7, Columns = 176;   // 176: the last group of 32 or 128 is partial
        var random = new Random(17 + group);
        float[] x = [.. Enumerable.Range(0, Rows * Columns).Select(_ => (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-3, 3))))];
        x[3] = 0f;
        for (int c = 0; c < Columns; c++)
        {
            x[(Rows - 1) * Columns + c] = 0f;   // an all-zero row: the scale's floor, no division by zero
        }

        // A static scale small enough that the largest values saturate at 448.
        var q = new ActivationQuantization(scaling, StaticScale: scaling == ActivationScaling.StaticPerTensor ? 0.05f : 0, GroupSize: group);
        float[] got = new float[x.Length];
        fixed (float* src = x, dst = got)
        {
            Fp8Activations.Quantize(src, Rows, Columns, q, dst);
        }

        for (int r = 0; r < Rows; r++)
        {
            int width = scaling == ActivationScaling.DynamicPerTokenGroup ? group : Columns;
            for (int c0 = 0; c0 < Columns; c0 += width)
            {
                var span = x.AsSpan((r * Columns) + c0, Math.Min(width, Columns - c0));
                float absMax = 0;
                foreach (float v in span)
                {
                    absMax = Math.Max(absMax, Math.Abs(v));
                }

                float scale = scaling switch
                {
                    ActivationScaling.StaticPerTensor => 0.05f,
                    ActivationScaling.DynamicPerToken => Math.Max(absMax / 448f, (float)(1.0 / (448 * 512))),
                    _ => Math.Max(absMax, 1e-10f) / 448f,
                };
                for (int i = 0; i < span.Length; i++)
                {
                    int at = (r * Columns) + c0 + i;
                    Assert.Equal(Nearest(x[at] / scale) * scale, got[at]);
                }
            }
        }
    }

    /// <summary>The E4M3 value nearest to v by exhaustive search; ties go to the code with an even mantissa.</summary>
    private static float Nearest(float v)
    {
        float best = 0;
        double bestDistance = double.MaxValue;
        for (int code = 0; code < 256; code++)
        {
            float value = Fp8.Decode((byte)code, DType.F8E4M3);
            if (float.IsNaN(value) || (Math.Sign(value) != Math.Sign(v) && value != 0))
            {
                continue;
            }

            double distance = Math.Abs((double)value - Math.Clamp(v, -448f, 448f));
            if (distance < bestDistance || (distance == bestDistance && (code & 1) == 0))
            {
                (best, bestDistance) = (value, distance);
            }
        }

        return best;
    }
}
