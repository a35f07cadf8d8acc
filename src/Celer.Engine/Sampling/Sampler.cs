namespace Celer.Engine;

/// <summary>
/// Samples one token from one row of logits, in vLLM v1's order (<c>vllm/v1/sample/sampler.py</c>):
/// <list type="number">
/// <item>raw logprobs, if requested (log-softmax of the untouched row);</item>
/// <item>allowed_token_ids, bad_words, min_tokens, logit_bias, then repetition/frequency/presence penalties;</item>
/// <item>greedy (temperature 0): argmax, lowest id on ties;</item>
/// <item>otherwise: divide by the temperature, min_p, top_k, top_p, and draw from the renormalized
/// distribution with the sequence's own generator.</item>
/// </list>
/// min_p runs before top-k/top-p as in vLLM, where it is an argmax-invariant logits processor applied
/// right after the temperature; this matters because top_p then sees the min_p-filtered mass.
/// </summary>
public static class Sampler
{
    // Per-thread scratch, grown to the vocabulary once, so a decode step allocates nothing here
    // (only the PositionLogprobs it returns, when asked).
    [ThreadStatic] private static float[]? t_rawLogits;
    [ThreadStatic] private static float[]? t_selection;
    [ThreadStatic] private static ulong[]? t_topPKeys;
    [ThreadStatic] private static uint[]? t_bitmask;

    /// <summary>
    /// Samples the next token of <paramref name="state"/>'s sequence. The row is overwritten: greedy leaves
    /// the processed logits, random sampling the filtered unnormalized probabilities (kept tokens are the
    /// nonzero ones). The caller records the token with
    /// <see cref="SamplingState.Append"/> once it is accepted.
    /// </summary>
    /// <param name="logits">One row of fp32 logits, vocabulary-sized.</param>
    /// <param name="eosTokenIds">The model's EOS ids (generation_config), masked while below min_tokens.</param>
    public static SampleResult Sample(Span<float> logits, SamplingState state, IReadOnlyCollection<int> eosTokenIds)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(eosTokenIds);
        if (logits.IsEmpty)
            throw new ArgumentException("The logits row is empty.", nameof(logits));
        Span<float> raw = Process(logits, state, eosTokenIds);

        int tokenId = state.Temperature == 0f ? SampleGreedy(logits, state)
            : Filter(logits, state) ? Draw(logits, state.Generator.NextDouble())
            : FullyMaskedFallback(state);

        return Result(raw, tokenId, state);
    }

    /// <summary>Keeps a copy of the raw row when logprobs are asked for (returned; empty otherwise), then applies the processors.</summary>
    private static Span<float> Process(Span<float> logits, SamplingState state, IReadOnlyCollection<int> eosTokenIds)
    {
        if (state.Grammar is { } grammar)
        {
            ApplyGrammar(logits, grammar);
        }

        Span<float> raw = default;
        if (state.Params.Logprobs is not null)
        {
            raw = Rent(ref t_rawLogits, logits.Length);
            logits.CopyTo(raw);
        }

        ApplyLogitsProcessors(logits, state, eosTokenIds);
        return raw;
    }

    /// <summary>The drawn token with the logprobs of the raw row (<see cref="Process"/>) when they were asked for.</summary>
    private static SampleResult Result(ReadOnlySpan<float> raw, int tokenId, SamplingState state) =>
        new(tokenId, state.Params.Logprobs is { } numTop ? Logprobs.Compute(raw, tokenId, numTop) : null);

    /// <summary>
    /// Speculative decoding's verification of one draft token against this row, which keeps the target distribution
    /// exactly (Leviathan et al. 2023, Chen et al. 2023) for a draft that proposes one token with certainty, as n-gram
    /// lookup does: greedy accepts the draft iff it is the argmax (so the output equals decoding without drafts);
    /// sampling accepts it with probability p(draft) under the row's final distribution (after every processor and
    /// filter) and otherwise draws from that distribution with the draft removed, max(0, p − q) renormalized. Returns
    /// the token that stands at this position and whether it is the draft; the row is overwritten as by <see cref="Sample"/>.
    /// </summary>
    public static (SampleResult Result, bool Accepted) Verify(Span<float> logits, SamplingState state, IReadOnlyCollection<int> eosTokenIds, int draftTokenId)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentOutOfRangeException.ThrowIfNegative(draftTokenId);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(draftTokenId, logits.Length);
        Span<float> raw = Process(logits, state, eosTokenIds);
        int tokenId;
        if (state.Temperature == 0f)
        {
            tokenId = SampleGreedy(logits, state);
        }
        else if (!Filter(logits, state))
        {
            tokenId = FullyMaskedFallback(state);
        }
        else if (state.Generator.NextDouble() * LogitsMath.Sum(logits) < logits[draftTokenId])
        {
            tokenId = draftTokenId;
        }
        else
        {
            logits[draftTokenId] = 0f;
            tokenId = Draw(logits, state.Generator.NextDouble());
        }

        return (Result(raw, tokenId, state), tokenId == draftTokenId);
    }

    /// <summary>Structured outputs: −inf for every token the grammar does not allow next.</summary>
    private static void ApplyGrammar(Span<float> logits, Celer.Grammars.GrammarMatcher grammar)
    {
        var bitmask = Rent(ref t_bitmask, grammar.Grammar.Vocabulary.BitmaskWords);
        grammar.FillNextTokenBitmask(bitmask);
        LogitsProcessors.ApplyTokenBitmask(logits, bitmask);
    }

    private static void ApplyLogitsProcessors(Span<float> logits, SamplingState state, IReadOnlyCollection<int> eosTokenIds)
    {
        if (state.SortedAllowedTokenIds is { } allowed)
            LogitsProcessors.ApplyAllowedTokenIds(logits, allowed);
        var editor = new RowLogitsEditor(logits);
        LogitsProcessors.ApplyEdits(ref editor, state, eosTokenIds);
    }

    private static int SampleGreedy(ReadOnlySpan<float> logits, SamplingState state)
    {
        int argMax = LogitsMath.ArgMax(logits);
        return float.IsNegativeInfinity(logits[argMax]) ? FullyMaskedFallback(state) : argMax;
    }

    /// <summary>
    /// Turns the processed row into the sampling distribution's unnormalized weights (temperature, min_p, top_k,
    /// top_p; the tokens kept are the nonzero ones); false when every token is masked.
    /// </summary>
    private static bool Filter(Span<float> logits, SamplingState state)
    {
        var p = state.Params;
        LogitsMath.DivideInPlace(logits, state.Temperature);
        float max = LogitsMath.Max(logits);
        if (float.IsNegativeInfinity(max))
            return false;

        // From here the row holds exp(x - max): unnormalized probabilities with the largest exactly 1,
        // so every filter below works without the softmax denominator.
        var weights = logits;
        LogitsMath.ExpShiftedInPlace(weights, max);

        // min_p: drop p < min_p · p_max; with p_max's weight 1 that is weight < min_p.
        if (p.MinP > 0f)
            LogitsMath.ZeroBelow(weights, p.MinP);

        // top_k keeps every token tied with the k-th largest, as vLLM's and HF's `logits < kth` mask does.
        if (p.TopK > 0 && p.TopK < weights.Length)
            LogitsMath.ZeroBelow(weights, KthLargest(weights, p.TopK));

        if (p.TopP < 1f)
            ApplyTopP(weights, p.TopP);

        return true;
    }

    /// <summary>
    /// Keeps the smallest set of most likely tokens whose mass reaches top_p·total: a token stays iff the
    /// mass of the tokens ranked above it (by weight, then lower id) is below top_p·total, which is vLLM's
    /// ascending-cumsum rule <c>cumsum &lt;= 1 - p</c> read from the other end. The most likely token always stays.
    /// </summary>
    private static void ApplyTopP(Span<float> weights, float topP)
    {
        double total = LogitsMath.Sum(weights);
        double target = topP * total;

        // Only tokens of weight ≥ (1-p)·total/V can be kept: all lighter ones together weigh at most
        // (1-p)·total, so the heavier ones already reach p·total. This usually leaves a small fraction of
        // the vocabulary to sort, instead of all of it.
        float floor = (float)((1.0 - topP) * total / weights.Length);
        var keys = Rent(ref t_topPKeys, weights.Length);
        int count = 0;
        for (int id = 0; id < weights.Length; id++)
        {
            float w = weights[id];
            if (w > 0f && w >= floor)
                keys[count++] = TopPKey(w, id);
        }
        var candidates = keys[..count];
        candidates.Sort();

        double massAbove = 0;
        int last = 0;
        for (; last < candidates.Length; last++)
        {
            if (last > 0 && massAbove >= target)
                break;
            massAbove += weights[(int)(uint)candidates[last]];
        }
        int cutId = (int)(uint)candidates[last - 1];
        float cutWeight = weights[cutId];
        for (int id = 0; id < weights.Length; id++)
        {
            float w = weights[id];
            if (w < cutWeight || (w == cutWeight && id > cutId))
                weights[id] = 0f;
        }
    }

    // Ascending order of the key = descending weight, then ascending id: positive float bits order like
    // the floats, so inverting them in the high half and putting the id in the low half sorts both at once.
    private static ulong TopPKey(float weight, int id) =>
        ((ulong)(uint.MaxValue - BitConverter.SingleToUInt32Bits(weight)) << 32) | (uint)id;

    /// <summary>Inverse-CDF draw over the remaining weights; <paramref name="uniform"/> ∈ [0, 1).</summary>
    private static int Draw(ReadOnlySpan<float> weights, double uniform)
    {
        double threshold = uniform * LogitsMath.Sum(weights);
        double cumulative = 0;
        int lastPositive = 0;
        for (int id = 0; id < weights.Length; id++)
        {
            float w = weights[id];
            if (w <= 0f)
                continue;
            cumulative += w;
            if (cumulative > threshold)
                return id;
            lastPositive = id;
        }
        return lastPositive;   // rounding left the threshold at the very end of the mass
    }

    /// <summary>
    /// The k-th largest weight (1-based) by quickselect on a copy: O(V) expected, with a sort of the
    /// remaining range as the guard against quadratic pivots.
    /// </summary>
    private static float KthLargest(ReadOnlySpan<float> weights, int k)
    {
        var s = Rent(ref t_selection, weights.Length);
        weights.CopyTo(s);
        int target = s.Length - k, lo = 0, hi = s.Length - 1;
        for (int round = 0; lo < hi; round++)
        {
            if (round == 64)
            {
                s[lo..(hi + 1)].Sort();
                break;
            }
            float a = s[lo], b = s[lo + (hi - lo) / 2], c = s[hi];
            float pivot = Math.Max(Math.Min(a, b), Math.Min(Math.Max(a, b), c));
            int i = lo, j = hi;
            while (i <= j)
            {
                while (s[i] < pivot) i++;
                while (s[j] > pivot) j--;
                if (i <= j)
                {
                    (s[i], s[j]) = (s[j], s[i]);
                    i++;
                    j--;
                }
            }
            if (target <= j)
                hi = j;
            else if (target >= i)
                lo = i;
            else
                break;   // target sits in the run equal to the pivot
        }
        return s[target];
    }

    // Every token masked means the request's constraints contradict each other (e.g. allowed_token_ids
    // that are all stop ids under min_tokens). Rather than fail the whole batch, keep to the allowed set.
    private static int FullyMaskedFallback(SamplingState state) =>
        state.SortedAllowedTokenIds is { Length: > 0 } allowed ? allowed[0] : 0;

    private static Span<T> Rent<T>(ref T[]? buffer, int length)
    {
        if (buffer is null || buffer.Length < length)
            buffer = new T[length];
        return buffer.AsSpan(0, length);
    }
}
