namespace Celer.Engine;

/// <summary>
/// The logits processors that run before greedy/random sampling, in vLLM v1's order
/// (<c>Sampler.apply_logits_processors</c>): allowed_token_ids, bad_words, min_tokens, logit_bias,
/// then the penalties. Each edits the row in place and touches only the tokens it concerns, except the
/// allowed-ids mask which has to write the whole row.
/// </summary>
internal static class LogitsProcessors
{
    /// <summary>Every token outside allowed_token_ids gets -inf.</summary>
    public static void ApplyAllowedTokenIds(Span<float> logits, int[] sortedAllowedTokenIds)
    {
        int next = 0;
        foreach (int allowed in sortedAllowedTokenIds)
        {
            logits[next..allowed].Fill(float.NegativeInfinity);
            next = allowed + 1;
        }
        logits[next..].Fill(float.NegativeInfinity);
    }

    /// <summary>
    /// vLLM's bad_words rule: for each banned token sequence whose all-but-last tokens equal the tail of the
    /// output so far, the last token gets -inf (a one-token bad word is always banned). The output only,
    /// not the prompt, as in vLLM's <c>apply_bad_words</c>.
    /// </summary>
    public static void ApplyBadWords(Span<float> logits, IReadOnlyList<int[]> badWordsTokenIds, IReadOnlyList<int> outputTokenIds)
    {
        // Indexed loops: foreach over an IReadOnlyList boxes its enumerator, once per token per sequence.
        for (int w = 0; w < badWordsTokenIds.Count; w++)
        {
            var badWord = badWordsTokenIds[w];
            int prefixLength = badWord.Length - 1;
            if (prefixLength > outputTokenIds.Count)
                continue;
            int offset = outputTokenIds.Count - prefixLength;
            bool prefixMatches = true;
            for (int i = 0; i < prefixLength && prefixMatches; i++)
                prefixMatches = outputTokenIds[offset + i] == badWord[i];
            if (prefixMatches)
                logits[badWord[^1]] = float.NegativeInfinity;
        }
    }

    /// <summary>While fewer than min_tokens tokens are out, EOS and stop_token_ids get -inf (vLLM masks the
    /// EOS ids even with ignore_eos: min_tokens is about the length, not about what stops it).</summary>
    public static void ApplyMinTokens(Span<float> logits, IReadOnlyList<int> stopTokenIds, IReadOnlyCollection<int> eosTokenIds)
    {
        for (int i = 0; i < stopTokenIds.Count; i++)
            logits[stopTokenIds[i]] = float.NegativeInfinity;
        foreach (int id in eosTokenIds)
        {
            if ((uint)id < (uint)logits.Length)
                logits[id] = float.NegativeInfinity;
        }
    }

    public static void ApplyLogitBias(Span<float> logits, int[] tokenIds, float[] clampedBias)
    {
        for (int i = 0; i < tokenIds.Length; i++)
            logits[tokenIds[i]] += clampedBias[i];
    }

    /// <summary>
    /// vLLM's <c>apply_penalties</c>: the repetition penalty (CTRL, Keskar et al. 2019) divides positive and
    /// multiplies negative logits of every token seen in the prompt or the output, once per token; then
    /// <c>logit -= frequency·count + presence·(count &gt; 0)</c> over output tokens only (OpenAI's formula).
    /// </summary>
    public static void ApplyPenalties(Span<float> logits, SamplingState state)
    {
        var p = state.Params;
        float repetition = p.RepetitionPenalty;
        if (repetition != 1f)
        {
            foreach (int id in state.PromptTokenSet!)
                ApplyRepetition(logits, id, repetition);
            foreach (int id in state.OutputTokenCounts.Keys)
            {
                if (!state.PromptTokenSet.Contains(id))
                    ApplyRepetition(logits, id, repetition);
            }
        }

        if (p.FrequencyPenalty != 0f || p.PresencePenalty != 0f)
        {
            // Two subtractions, in vLLM's order, so the rounding matches.
            foreach (var (id, count) in state.OutputTokenCounts)
            {
                logits[id] -= p.FrequencyPenalty * count;
                logits[id] -= p.PresencePenalty;
            }
        }
    }

    private static void ApplyRepetition(Span<float> logits, int id, float penalty)
    {
        // Out-of-vocabulary prompt ids are rejected at admission; the guard keeps a bad caller from
        // turning into an IndexOutOfRange inside the engine loop.
        if ((uint)id >= (uint)logits.Length)
            return;
        float x = logits[id];
        logits[id] = x > 0 ? x / penalty : x * penalty;
    }
}
