using Celer.Backends.Cpu.Kernels;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

/// <summary>The FP8 formats against their definitions (OCP 8-bit floating point, cuda_fp8.h's saturating conversion).</summary>
public class Fp8Tests
{
    [Theory]
    [InlineData(DType.F8E4M3, 1.0, 0x38)]
    [InlineData(DType.F8E4M3, 448.0, 0x7e)]        // the largest finite value
    [InlineData(DType.F8E4M3, 0.001953125, 0x01)]  // 2^-9, the smallest subnormal
    [InlineData(DType.F8E4M3, 0.015625, 0x08)]     // 2^-6, the smallest normal
    [InlineData(DType.F8E4M3, -2.5, 0xc2)]
    [InlineData(DType.F8E5M2, 1.0, 0x3c)]
    [InlineData(DType.F8E5M2, 57344.0, 0x7b)]
    [InlineData(DType.F8E5M2, 1.52587890625e-05, 0x01)]   // 2^-16
    [InlineData(DType.F8E5M2, -0.375, 0xb6)]
    public void Known_values_have_their_codes(DType type, double value, int code)
    {
        Assert.Equal((byte)code, Fp8.Encode((float)value, type));
        Assert.Equal((float)value, Fp8.Decode((byte)code, type));
    }

    [Theory]
    [InlineData(DType.F8E4M3)]
    [InlineData(DType.F8E5M2)]
    public void Every_finite_code_survives_a_round_trip_and_midpoints_round_to_the_even_code(DType type)
    {
        int finite = 0;
        for (int code = 0; code < 256; code++)
        {
            float value = Fp8.Decode((byte)code, type);
            if (!float.IsFinite(value))
            {
                continue;
            }

            finite++;
            Assert.Equal((byte)code, Fp8.Encode(value, type));
            // Positive codes order like their values; the midpoint to the next code goes to the one with an even mantissa.
            if ((code & 0x7f) < (type == DType.F8E4M3 ? 0x7e : 0x7b))
            {
                float next = Fp8.Decode((byte)(code + 1), type);
                Assert.True(Math.Abs(next) > Math.Abs(value), $"code {code + 1:x2} is not past {code:x2}");
                float midpoint = (float)(((double)value + next) / 2);
                byte even = (code & 1) == 0 ? (byte)code : (byte)(code + 1);
                Assert.Equal(even, Fp8.Encode(midpoint, type));
                Assert.Equal((byte)code, Fp8.Encode((float)((value * 0.75) + (next * 0.25)), type));
            }
        }

        Assert.Equal(type == DType.F8E4M3 ? 254 : 248, finite);
    }

    /// <summary>
    /// E4M3's encoder (bit manipulation, the CPU's W8A8 hot path) against the format's definition on four million floats
    /// spread over every exponent: the nearest code by value, a tie to the even code, saturation past 448.
    /// </summary>
    [Fact]
    public void E4m3_codes_are_the_nearest_values_for_floats_of_every_exponent()
    {
        float[] values = [.. Enumerable.Range(0, 127).Select(c => Fp8.Decode((byte)c, DType.F8E4M3))];   // 0 .. 448, ascending
        for (uint bits = 0; bits < 0x8000_0000u - 1021u; bits += 1021u)   // an odd stride reaches every mantissa pattern
        {
            float value = BitConverter.UInt32BitsToSingle(bits);
            if (float.IsNaN(value))
            {
                continue;
            }

            int upper = Array.FindIndex(values, v => v >= value);
            int expected = upper < 0 ? 0x7e
                : upper == 0 || values[upper] == value ? upper
                : (value - values[upper - 1]) < (values[upper] - value) ? upper - 1
                : (value - values[upper - 1]) > (values[upper] - value) ? upper
                : (upper - 1) % 2 == 0 ? upper - 1 : upper;
            Assert.Equal((byte)expected, Fp8.Encode(value, DType.F8E4M3));
            Assert.Equal((byte)(0x80 | expected), Fp8.Encode(-value, DType.F8E4M3));
        }
    }

    [Theory]
    [InlineData(DType.F8E4M3, 0x7e)]
    [InlineData(DType.F8E5M2, 0x7b)]
    public void Out_of_range_values_saturate_and_nan_stays_nan(DType type, int maxCode)
    {
        Assert.Equal((byte)maxCode, Fp8.Encode(1e9f, type));
        Assert.Equal((byte)(0x80 | maxCode), Fp8.Encode(-1e9f, type));
        Assert.Equal((byte)maxCode, Fp8.Encode(float.PositiveInfinity, type));
        Assert.Equal((byte)0x7f, Fp8.Encode(float.NaN, type));
        Assert.True(float.IsNaN(Fp8.Decode(0x7f, type)));
        Assert.Equal(0x80, Fp8.Encode(-0f, type));
        Assert.Equal(0, Fp8.Encode(1e-30f, type));   // below half the smallest subnormal
    }
}
