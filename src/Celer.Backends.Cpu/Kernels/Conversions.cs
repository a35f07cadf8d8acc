using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// Widening of stored weight rows (bf16, f16) to fp32, the compute type of every kernel.
/// bf16 is the upper half of an fp32, so widening is exact: zero-extend to 32 bits and shift left 16.
/// </summary>
public static unsafe class Conversions
{
    /// <summary>Widens <paramref name="count"/> values of <paramref name="type"/> at <paramref name="src"/> to fp32.</summary>
    public static void ToF32(void* src, DType type, float* dst, int count)
    {
        switch (type)
        {
            case DType.F32:
                new ReadOnlySpan<float>(src, count).CopyTo(new Span<float>(dst, count));
                break;
            case DType.BF16:
                BF16ToF32((ushort*)src, dst, count);
                break;
            case DType.F16:
                // TensorPrimitives vectorizes Half -> float with the exact IEEE widening.
                TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(src, count), new Span<float>(dst, count));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, null);
        }
    }

    /// <summary>
    /// Converts <paramref name="count"/> values between any two of fp32, fp16 and bf16 (rounding to nearest even, as
    /// torch's <c>.to(dtype)</c>): a checkpoint served in another dtype than it is stored in.
    /// </summary>
    public static void Convert(void* src, DType from, void* dst, DType to, long count)
    {
        const int Chunk = 4096;
        float* wide = stackalloc float[Chunk];
        for (long start = 0; start < count; start += Chunk)
        {
            int n = (int)Math.Min(Chunk, count - start);
            ToF32((byte*)src + (start * from.ByteSize()), from, wide, n);
            for (int i = 0; i < n; i++)
            {
                long at = start + i;
                switch (to)
                {
                    case DType.F32: ((float*)dst)[at] = wide[i]; break;
                    case DType.F16: ((Half*)dst)[at] = (Half)wide[i]; break;
                    case DType.BF16: ((ushort*)dst)[at] = F32ToBF16(wide[i]); break;
                    default: throw new NotSupportedException($"dtype {to}");
                }
            }
        }
    }

    /// <summary>Widens bf16 (raw 16-bit patterns) to fp32.</summary>
    public static void BF16ToF32(ushort* src, float* dst, int count)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= count - Vector512<ushort>.Count; i += Vector512<ushort>.Count)
            {
                var bits = Vector512.Load(src + i);
                WidenBF16(bits, out var lo, out var hi);
                lo.Store(dst + i);
                hi.Store(dst + i + Vector512<float>.Count);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= count - Vector256<ushort>.Count; i += Vector256<ushort>.Count)
            {
                var bits = Vector256.Load(src + i);
                WidenBF16(bits, out var lo, out var hi);
                lo.Store(dst + i);
                hi.Store(dst + i + Vector256<float>.Count);
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= count - Vector128<ushort>.Count; i += Vector128<ushort>.Count)
            {
                var bits = Vector128.Load(src + i);
                var lo = Vector128.ShiftLeft(Vector128.WidenLower(bits), 16).AsSingle();
                var hi = Vector128.ShiftLeft(Vector128.WidenUpper(bits), 16).AsSingle();
                lo.Store(dst + i);
                hi.Store(dst + i + Vector128<float>.Count);
            }
        }

        for (; i < count; i++)
        {
            dst[i] = BF16ToF32(src[i]);
        }
    }

    /// <summary>One bf16 bit pattern as fp32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BF16ToF32(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>
    /// Rounds fp32 to bf16 with round-to-nearest-even, the way torch's <c>.to(torch.bfloat16)</c> does;
    /// NaN stays a (quiet) NaN.
    /// </summary>
    public static ushort F32ToBF16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x40);
        }

        uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }

    /// <summary>Widens 32 bf16 values to two fp32 vectors (elements 0..15 and 16..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void WidenBF16(Vector512<ushort> bits, out Vector512<float> lo, out Vector512<float> hi)
    {
        lo = Vector512.ShiftLeft(Vector512.WidenLower(bits), 16).AsSingle();
        hi = Vector512.ShiftLeft(Vector512.WidenUpper(bits), 16).AsSingle();
    }

    /// <summary>Widens 16 bf16 values to two fp32 vectors (elements 0..7 and 8..15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void WidenBF16(Vector256<ushort> bits, out Vector256<float> lo, out Vector256<float> hi)
    {
        lo = Vector256.ShiftLeft(Vector256.WidenLower(bits), 16).AsSingle();
        hi = Vector256.ShiftLeft(Vector256.WidenUpper(bits), 16).AsSingle();
    }
}
