namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// Writes the new tokens' keys and values into the paged KV cache (vLLM's <c>reshape_and_cache</c>).
/// Each cache is [numBlocks, blockSize, numKvHeads, headDim] contiguous, so a slot
/// (blockId · blockSize + offset) addresses one token's numKvHeads · headDim values; slot −1 marks a
/// padding token and is skipped. Slots come from the block manager and are trusted to be in range.
/// </summary>
public static unsafe class KvCache
{
    /// <summary>
    /// Copies k and v of <paramref name="numTokens"/> tokens into their slots. Consecutive tokens of k and v are
    /// <paramref name="sourceStride"/> floats apart (0 means packed, numKvHeads · headDim), so k and v can be read
    /// straight out of a fused qkv projection.
    /// </summary>
    public static void Write(float* k, float* v, int numTokens, int numKvHeads, int headDim, int* slotMapping, float* kCache, float* vCache, int sourceStride = 0)
    {
        int tokenSize = TokenSize(numTokens, numKvHeads, headDim, ref sourceStride);
        for (int t = 0; t < numTokens; t++)
        {
            CopyToken(k, v, t, slotMapping[t], tokenSize, sourceStride, kCache, vCache);
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

    private static void CopyToken(float* k, float* v, int token, long slot, int tokenSize, int sourceStride, float* kCache, float* vCache)
    {
        if (slot < 0)
        {
            return;
        }

        long source = (long)token * sourceStride;
        long destination = slot * tokenSize;
        new ReadOnlySpan<float>(k + source, tokenSize).CopyTo(new Span<float>(kCache + destination, tokenSize));
        new ReadOnlySpan<float>(v + source, tokenSize).CopyTo(new Span<float>(vCache + destination, tokenSize));
    }
}
