using Celer.Backends.Cpu.Kernels;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

public unsafe class ConversionsTests
{
    [Fact]
    public void BF16ToF32_IsTheUpperHalfOfTheFloat_ForAllLengths()
    {
        var random = new Random(51);
        foreach (int n in ElementwiseTestSizes.Lengths)
        {
            var bits = new ushort[n];
            for (int i = 0; i < n; i++)
            {
                bits[i] = (ushort)random.Next(65536);
            }

            var output = new float[n];
            fixed (ushort* pb = bits)
            fixed (float* po = output)
            {
                Conversions.ToF32(pb, DType.BF16, po, n);
            }

            for (int i = 0; i < n; i++)
            {
                Assert.Equal((uint)bits[i] << 16, BitConverter.SingleToUInt32Bits(output[i]));
            }
        }
    }

    [Fact]
    public void F16ToF32_MatchesHalfCast()
    {
        var bits = Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();
        var output = new float[bits.Length];
        fixed (ushort* pb = bits)
        fixed (float* po = output)
        {
            Conversions.ToF32(pb, DType.F16, po, bits.Length);
        }

        for (int i = 0; i < bits.Length; i++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf(bits[i]);
            Assert.True(expected.Equals(output[i]), $"0x{i:X4}: expected {expected}, got {output[i]}");
        }
    }

    [Theory]
    [InlineData(1f, 0x3F80)]
    [InlineData(-2f, 0xC000)]
    [InlineData(1.00390625f, 0x3F80)] // exactly halfway between 0x3F80 and 0x3F81: ties to even
    [InlineData(1.01171875f, 0x3F82)] // halfway between 0x3F81 and 0x3F82: ties to even
    [InlineData(1.0039064f, 0x3F81)] // one float above halfway: rounds up
    [InlineData(float.PositiveInfinity, 0x7F80)]
    [InlineData(3.4028235e38f, 0x7F80)] // rounds past the largest bf16 to infinity, as torch does
    public void F32ToBF16_RoundsToNearestEven(float value, int expected)
    {
        Assert.Equal((ushort)expected, Conversions.F32ToBF16(value));
    }

    [Fact]
    public void F32ToBF16_KeepsNaN()
    {
        Assert.True(float.IsNaN(Conversions.BF16ToF32(Conversions.F32ToBF16(float.NaN))));
    }
}
