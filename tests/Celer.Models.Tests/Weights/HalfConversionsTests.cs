using Xunit;
using Celer.Models.Weights;

namespace Celer.Models.Tests.Weights;

public class HalfConversionsTests
{
    [Theory]
    [InlineData(0x3F800000u, (ushort)0x3F80)] // 1.0 exact
    [InlineData(0x3F808000u, (ushort)0x3F80)] // tie, kept bit even: round down
    [InlineData(0x3F818000u, (ushort)0x3F82)] // tie, kept bit odd: round up to even
    [InlineData(0x3F808001u, (ushort)0x3F81)] // just above the tie: up
    [InlineData(0x3F807FFFu, (ushort)0x3F80)] // just below the tie: down
    [InlineData(0x80000000u, (ushort)0x8000)] // -0
    [InlineData(0x7F800000u, (ushort)0x7F80)] // +inf
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)] // float.MaxValue rounds to inf, as in torch
    [InlineData(0xFFC00001u, (ushort)0x7FC0)] // any NaN becomes the quiet NaN
    [InlineData(0x00000001u, (ushort)0x0000)] // smallest subnormal rounds to 0
    public void FloatToBf16_rounds_to_nearest_even_like_torch(uint floatBits, ushort expected)
    {
        Assert.Equal(expected, HalfConversions.FloatToBf16(BitConverter.UInt32BitsToSingle(floatBits)));
    }

    [Fact]
    public void Bf16ToFloat_is_the_upper_half_of_a_float()
    {
        Assert.Equal(1f, HalfConversions.Bf16ToFloat(0x3F80));
        Assert.Equal(-2f, HalfConversions.Bf16ToFloat(0xC000));
        Assert.Equal(0.0078125f, HalfConversions.Bf16ToFloat(0x3C00));
        Assert.True(float.IsPositiveInfinity(HalfConversions.Bf16ToFloat(0x7F80)));
    }

    [Fact]
    public void Every_bf16_value_survives_a_round_trip_through_float()
    {
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            float f = HalfConversions.Bf16ToFloat((ushort)bits);
            ushort back = HalfConversions.FloatToBf16(f);
            Assert.True(float.IsNaN(f) ? back == 0x7FC0 : back == bits, $"bits {bits:X4}");
        }
    }

    [Fact]
    public void Span_conversions_match_scalar_ones_for_every_length_up_to_257()
    {
        var random = new Random(1234);
        for (int length = 0; length <= 257; length++)
        {
            var floats = new float[length];
            for (int i = 0; i < length; i++)
            {
                floats[i] = BitConverter.Int32BitsToSingle(random.Next()) * (random.Next(2) == 0 ? 1 : -1);
            }
            if (length > 3)
            {
                floats[1] = float.NaN;
                floats[2] = float.PositiveInfinity;
                floats[3] = -0f;
            }

            var bf16 = new ushort[length];
            HalfConversions.FloatToBf16(floats, bf16);
            var widened = new float[length];
            HalfConversions.Bf16ToFloat(bf16, widened);
            var half = new Half[length];
            HalfConversions.FloatToHalf(floats, half);
            var halfWidened = new float[length];
            HalfConversions.HalfToFloat(half, halfWidened);
            for (int i = 0; i < length; i++)
            {
                Assert.Equal(HalfConversions.FloatToBf16(floats[i]), bf16[i]);
                Assert.Equal(BitConverter.SingleToInt32Bits(HalfConversions.Bf16ToFloat(bf16[i])), BitConverter.SingleToInt32Bits(widened[i]));
                Assert.Equal(BitConverter.HalfToUInt16Bits((Half)floats[i]), BitConverter.HalfToUInt16Bits(half[i]));
                Assert.Equal((float)half[i], halfWidened[i]);
            }
        }
    }

    [Fact]
    public void ToFloat_widens_raw_bytes_of_each_dtype()
    {
        float[] values = [1.5f, -0.25f, 3f];
        var bf16 = new ushort[3];
        HalfConversions.FloatToBf16(values, bf16);
        var half = values.Select(v => (Half)v).ToArray();
        var result = new float[3];

        HalfConversions.ToFloat(DType.BF16, System.Runtime.InteropServices.MemoryMarshal.AsBytes(bf16.AsSpan()), result);
        Assert.Equal(values, result);
        HalfConversions.ToFloat(DType.F16, System.Runtime.InteropServices.MemoryMarshal.AsBytes(half.AsSpan()), result);
        Assert.Equal(values, result);
        HalfConversions.ToFloat(DType.F32, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()), result);
        Assert.Equal(values, result);
    }

    [Fact]
    public void Short_destination_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => HalfConversions.Bf16ToFloat(new ushort[4], new float[3]));
    }
}
