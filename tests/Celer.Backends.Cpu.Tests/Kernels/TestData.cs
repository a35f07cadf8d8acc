using Celer.Backends.Cpu.Kernels;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

/// <summary>Seeded random inputs (never zeros) and closeness checks shared by the kernel tests.</summary>
internal static class TestData
{
    /// <summary>Uniform values in ±[0.05, 1): no zeros, both signs, no magnitudes that hide rounding.</summary>
    public static float[] Floats(Random random, long count)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            float magnitude = 0.05f + (0.95f * random.NextSingle());
            values[i] = random.Next(2) == 0 ? magnitude : -magnitude;
        }

        return values;
    }

    /// <summary>
    /// Weights in the given dtype, as raw bytes, plus the exact fp32 values they stand for (what the kernel must
    /// use after widening).
    /// </summary>
    public static (byte[] Stored, float[] Values) Weights(Random random, long count, DType type)
    {
        float[] values = Floats(random, count);
        byte[] stored = new byte[count * type.ByteSize()];
        for (long i = 0; i < count; i++)
        {
            switch (type)
            {
                case DType.F32:
                    BitConverter.TryWriteBytes(stored.AsSpan((int)(i * 4)), values[i]);
                    break;
                case DType.F16:
                    Half half = (Half)values[i];
                    BitConverter.TryWriteBytes(stored.AsSpan((int)(i * 2)), half);
                    values[i] = (float)half;
                    break;
                case DType.BF16:
                    ushort bits = Conversions.F32ToBF16(values[i]);
                    BitConverter.TryWriteBytes(stored.AsSpan((int)(i * 2)), bits);
                    values[i] = BitConverter.UInt32BitsToSingle((uint)bits << 16);
                    break;
            }
        }

        return (stored, values);
    }

    /// <summary>Asserts |actual − expected| ≤ atol + rtol·scale[i] elementwise, naming the first failing index.</summary>
    public static void AssertClose(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double rtol, double atol, ReadOnlySpan<double> scale = default, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double bound = atol + (rtol * (scale.IsEmpty ? Math.Abs(expected[i]) : scale[i]));
            double error = Math.Abs(actual[i] - expected[i]);
            Assert.True(error <= bound, $"{what}[{i}]: expected {expected[i]:R}, got {actual[i]:R} (error {error:E2} > {bound:E2})");
        }
    }

    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double rtol, double atol, string what = "")
    {
        var wide = new double[expected.Length];
        for (int i = 0; i < wide.Length; i++)
        {
            wide[i] = expected[i];
        }

        AssertClose(wide, actual, rtol, atol, default, what);
    }
}
