using System.Numerics;
using System.Runtime.InteropServices;

namespace Celer.Models.Weights;

/// <summary>
/// bfloat16 / float16 ⇄ float32. bfloat16 is the upper half of a float32, so widening is a shift;
/// narrowing rounds to nearest-even exactly as torch's <c>c10::BFloat16</c> does (NaN becomes the
/// quiet NaN 0x7FC0). float16 goes through <see cref="Half"/>.
/// </summary>
public static class HalfConversions
{
    private const ushort Bf16QuietNaN = 0x7FC0;

    public static float Bf16ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    public static ushort FloatToBf16(float value)
    {
        if (float.IsNaN(value))
        {
            return Bf16QuietNaN;
        }
        uint u = BitConverter.SingleToUInt32Bits(value);
        // Adding 0x7FFF plus the lowest kept bit rounds the dropped half to nearest, ties to even.
        uint roundingBias = ((u >> 16) & 1) + 0x7FFF;
        return (ushort)((u + roundingBias) >> 16);
    }

    public static float HalfToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static ushort FloatToHalf(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    public static void Bf16ToFloat(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        var dst = MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= source.Length - Vector<ushort>.Count; i += Vector<ushort>.Count)
            {
                Vector.Widen(new Vector<ushort>(source[i..]), out var low, out var high);
                Vector.ShiftLeft(low, 16).CopyTo(dst[i..]);
                Vector.ShiftLeft(high, 16).CopyTo(dst[(i + Vector<uint>.Count)..]);
            }
        }
        for (; i < source.Length; i++)
        {
            dst[i] = (uint)source[i] << 16;
        }
    }

    public static void FloatToBf16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        CheckLengths(source.Length, destination.Length);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var src = MemoryMarshal.Cast<float, uint>(source);
            var one = Vector<uint>.One;
            var bias = new Vector<uint>(0x7FFF);
            var nan = new Vector<uint>(Bf16QuietNaN);
            for (; i <= source.Length - Vector<ushort>.Count; i += Vector<ushort>.Count)
            {
                var low = Round(new Vector<uint>(src[i..]), new Vector<float>(source[i..]));
                int j = i + Vector<uint>.Count;
                var high = Round(new Vector<uint>(src[j..]), new Vector<float>(source[j..]));
                Vector.Narrow(low, high).CopyTo(destination[i..]);
            }

            Vector<uint> Round(Vector<uint> u, Vector<float> f)
            {
                var rounded = Vector.ShiftRightLogical(u + (Vector.ShiftRightLogical(u, 16) & one) + bias, 16);
                var notNaN = Vector.AsVectorUInt32(Vector.Equals(f, f));
                return Vector.ConditionalSelect(notNaN, rounded, nan);
            }
        }
        for (; i < source.Length; i++)
        {
            destination[i] = FloatToBf16(source[i]);
        }
    }

    public static void HalfToFloat(ReadOnlySpan<Half> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        for (int i = 0; i < source.Length; i++)
        {
            destination[i] = (float)source[i];
        }
    }

    public static void FloatToHalf(ReadOnlySpan<float> source, Span<Half> destination)
    {
        CheckLengths(source.Length, destination.Length);
        for (int i = 0; i < source.Length; i++)
        {
            destination[i] = (Half)source[i];
        }
    }

    /// <summary>Widens raw little-endian weight bytes of <paramref name="dtype"/> to float32.</summary>
    public static void ToFloat(DType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (dtype)
        {
            case DType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                break;
            case DType.BF16:
                Bf16ToFloat(MemoryMarshal.Cast<byte, ushort>(source), destination);
                break;
            case DType.F16:
                HalfToFloat(MemoryMarshal.Cast<byte, Half>(source), destination);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null);
        }
    }

    private static void CheckLengths(int source, int destination)
    {
        if (destination < source)
        {
            throw new ArgumentException($"destination holds {destination} elements, source has {source}", nameof(destination));
        }
    }
}
