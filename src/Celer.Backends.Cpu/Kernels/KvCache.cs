using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// How a KV cache stores its values: fp32; bf16 (<c>--kv-cache-dtype bfloat16</c>), rounded to nearest even; or FP8
/// (<c>--kv-cache-dtype fp8|fp8_e5m2</c>) holding value / scale with one scale per layer for keys and one for values
/// (the checkpoint's k_scale/v_scale, 1.0 where absent).
/// </summary>
public readonly record struct KvCacheFormat(DType Type, float KScale = 1f, float VScale = 1f)
{
    public static KvCacheFormat F32 => new(DType.F32);

    public bool IsFp8 => Type is DType.F8E4M3 or DType.F8E5M2;
}

/// <summary>
/// Writes the new tokens' keys and values into the paged KV cache (vLLM's <c>reshape_and_cache</c>).
/// Each cache is [numBlocks, blockSize, numKvHeads, headDim] contiguous, so a slot
/// (blockId · blockSize + offset) addresses one token's numKvHeads · headDim values; slot −1 marks a
/// padding token and is skipped. Slots come from the block manager and are trusted to be in range.
/// </summary>
public static unsafe class KvCache
{
    /// <summary>
    /// Copies k and v of <paramref name="numTokens"/> tokens into their slots of an fp32 cache. Consecutive tokens of k
    /// and v are <paramref name="sourceStride"/> floats apart (0 means packed, numKvHeads · headDim), so k and v can be
    /// read straight out of a fused qkv projection.
    /// </summary>
    public static void Write(float* k, float* v, int numTokens, int numKvHeads, int headDim, int* slotMapping, float* kCache, float* vCache, int sourceStride = 0) =>
        Write(k, v, numTokens, numKvHeads, headDim, slotMapping, kCache, vCache, KvCacheFormat.F32, sourceStride);

    /// <summary>
    /// <see cref="Write(float*, float*, int, int, int, int*, float*, float*, int)"/> into a cache of any
    /// <see cref="KvCacheFormat"/>: bf16 caches store each value rounded to nearest even, FP8 caches each value divided
    /// by its scale, rounded to nearest even.
    /// </summary>
    public static void Write(float* k, float* v, int numTokens, int numKvHeads, int headDim, int* slotMapping, void* kCache, void* vCache, KvCacheFormat format, int sourceStride = 0)
    {
        int tokenSize = TokenSize(numTokens, numKvHeads, headDim, ref sourceStride);
        for (int t = 0; t < numTokens; t++)
        {
            long slot = slotMapping[t];
            if (slot >= 0)
            {
                long source = (long)t * sourceStride, destination = slot * tokenSize;
                Store(k + source, kCache, destination, tokenSize, format.Type, format.KScale);
                Store(v + source, vCache, destination, tokenSize, format.Type, format.VScale);
            }
        }
    }

    private static int TokenSize(int numTokens, int numKvHeads, int headDim, ref int sourceStride)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(numTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(numKvHeads);
        ArgumentOutOfRangeException.ThrowIfNegative(headDim);
        int tokenSize = numKvHeads * headDim;
        if (sourceStride == 0)
        {
            sourceStride = tokenSize;
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(sourceStride, tokenSize);
        return tokenSize;
    }

    /// <summary>One token's <paramref name="count"/> values into the cache at element <paramref name="destination"/>, in its format.</summary>
    private static void Store(float* values, void* cache, long destination, int count, DType type, float scale)
    {
        switch (type)
        {
            case DType.F32:
                new ReadOnlySpan<float>(values, count).CopyTo(new Span<float>((float*)cache + destination, count));
                break;
            case DType.BF16:
                for (int i = 0; i < count; i++)
                {
                    ((ushort*)cache)[destination + i] = Conversions.F32ToBF16(values[i]);
                }

                break;
            default:
                Fp8.Encode(values, scale, type, (byte*)cache + destination, count);
                break;
        }
    }
}
