namespace Celer.Engine;

/// <summary>
/// Logprobs of one position as vLLM v1 returns them by default (<c>logprobs_mode="raw_logprobs"</c>):
/// a log-softmax of the raw model logits, before penalties, temperature and top-k/top-p.
/// All values are fp32 <c>(x - max) - log Σ exp(x - max)</c>; ranks and the top-k compare those
/// same fp32 values, so a token's rank agrees with its position in <see cref="PositionLogprobs.Top"/>.
/// </summary>
public static class Logprobs
{
    /// <summary>
    /// The max and the log of the softmax denominator of a row: logprob(i) = (x[i] - max) - logSumExp.
    /// </summary>
    public static (float Max, float LogSumExp) Normalizer(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty)
            throw new ArgumentException("The logits row is empty.", nameof(logits));
        float max = LogitsMath.Max(logits);
        if (float.IsNegativeInfinity(max))
            return (max, 0f);   // every token masked: all logprobs are -inf, no NaN from -inf - -inf
        return (max, (float)Math.Log(LogitsMath.SumExp(logits, max)));
    }

    /// <summary>Writes the log-softmax of <paramref name="logits"/> into <paramref name="logprobs"/> (may alias).</summary>
    public static void LogSoftmax(ReadOnlySpan<float> logits, Span<float> logprobs)
    {
        if (logprobs.Length != logits.Length)
            throw new ArgumentException("The output row must have the length of the logits row.", nameof(logprobs));
        var (max, logSumExp) = Normalizer(logits);
        for (int i = 0; i < logits.Length; i++)
            logprobs[i] = (logits[i] - max) - logSumExp;
    }

    /// <summary>
    /// vLLM's rank of <paramref name="tokenId"/>: 1 + the number of tokens with a strictly greater logprob.
    /// </summary>
    public static int Rank(ReadOnlySpan<float> logits, int tokenId)
    {
        var (max, logSumExp) = Normalizer(logits);
        return Rank(logits, tokenId, max, logSumExp);
    }

    /// <summary>
    /// The <paramref name="count"/> most likely tokens, in descending order of logprob, lower token id first
    /// on ties. Writes min(count, vocab) ids into <paramref name="tokenIds"/> and returns how many.
    /// </summary>
    public static int TopK(ReadOnlySpan<float> logits, int count, Span<int> tokenIds)
    {
        var (max, logSumExp) = Normalizer(logits);
        return TopK(logits, count, max, logSumExp, tokenIds);
    }

    /// <summary>
    /// The logprobs of one position: the chosen token (sampled, or the next prompt token) with its rank,
    /// and the <paramref name="numTop"/> most likely tokens (OpenAI's <c>top_logprobs</c>).
    /// </summary>
    public static PositionLogprobs Compute(ReadOnlySpan<float> logits, int chosenTokenId, int numTop)
    {
        if ((uint)chosenTokenId >= (uint)logits.Length)
            throw new ArgumentOutOfRangeException(nameof(chosenTokenId), chosenTokenId, $"Token id outside the vocabulary of {logits.Length}.");
        ArgumentOutOfRangeException.ThrowIfNegative(numTop);

        var (max, logSumExp) = Normalizer(logits);
        var chosen = new TokenLogprob(chosenTokenId, LogprobOf(logits[chosenTokenId], max, logSumExp), Rank(logits, chosenTokenId, max, logSumExp));
        if (numTop == 0)
            return new PositionLogprobs(chosen, []);

        // numTop is at most the server's max_logprobs (20 by default); stack scratch stays small.
        Span<int> ids = numTop <= 256 ? stackalloc int[numTop] : new int[numTop];
        int found = TopK(logits, numTop, max, logSumExp, ids);
        var top = new TokenLogprob[found];
        // vLLM ranks the top list by position (1..k, LogprobsProcessor's topk_ranks), even across ties.
        for (int r = 0; r < found; r++)
            top[r] = new TokenLogprob(ids[r], LogprobOf(logits[ids[r]], max, logSumExp), r + 1);
        return new PositionLogprobs(chosen, top);
    }

    private static float LogprobOf(float logit, float max, float logSumExp) => (logit - max) - logSumExp;

    private static int Rank(ReadOnlySpan<float> logits, int tokenId, float max, float logSumExp)
    {
        float chosen = LogprobOf(logits[tokenId], max, logSumExp);
        int greater = 0;
        foreach (var x in logits)
        {
            if (LogprobOf(x, max, logSumExp) > chosen)
                greater++;
        }
        return greater + 1;
    }

    // One pass with a sorted insertion buffer: after the first few hundred tokens almost nothing beats the
    // current k-th, so this is O(vocab) with rare O(k) inserts. Scanning ids in increasing order and
    // inserting only on a strictly greater value makes the lower id win every tie.
    private static int TopK(ReadOnlySpan<float> logits, int count, float max, float logSumExp, Span<int> tokenIds)
    {
        count = Math.Min(count, Math.Min(logits.Length, tokenIds.Length));
        if (count == 0)
            return 0;
        Span<float> values = count <= 256 ? stackalloc float[count] : new float[count];
        int filled = 0;
        for (int id = 0; id < logits.Length; id++)
        {
            float value = LogprobOf(logits[id], max, logSumExp);
            if (filled == count && !(value > values[count - 1]))
                continue;
            int position = filled < count ? filled++ : count - 1;
            while (position > 0 && value > values[position - 1])
            {
                values[position] = values[position - 1];
                tokenIds[position] = tokenIds[position - 1];
                position--;
            }
            values[position] = value;
            tokenIds[position] = id;
        }
        return filled;
    }
}
