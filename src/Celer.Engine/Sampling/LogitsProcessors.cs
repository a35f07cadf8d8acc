using Celer.Models.Backend;

namespace Celer.Engine;

/// <summary>
/// The logits processors that run before greedy/random sampling, in vLLM v1's order
/// (<c>Sampler.apply_logits_processors</c>): allowed_token_ids, bad_words, min_tokens, logit_bias,
/// then the penalties. All but the allowed-ids mask (which has to write the whole row) touch only the tokens
/// they concern, and are written once against an <see cref="ILogitsEditor"/>: the host sampler applies the
/// edits to its row as they come, the GPU sampler records them and applies the same list on the device.
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
    /// −inf for every token whose bit is 0 (bit t % 32 of word t / 32): a grammar's allowed tokens. Ids past the
    /// bitmask's vocabulary (a model's padded rows) are never allowed.
    /// </summary>
    public static void ApplyTokenBitmask(Span<float> logits, ReadOnlySpan<uint> bitmask)
    {
        int covered = Math.Min(logits.Length, bitmask.Length * 32);
        for (int w = 0; w * 32 < covered; w++)
        {
            uint bits = bitmask[w];
            if (bits == uint.MaxValue)
                continue;
            int end = Math.Min(covered, w * 32 + 32);
            for (int id = w * 32; id < end; id++)
            {
                if ((bits >> (id & 31) & 1) == 0)
                    logits[id] = float.NegativeInfinity;
            }
        }

        logits[covered..].Fill(float.NegativeInfinity);
    }

    /// <summary>bad_words, min_tokens, logit_bias and the penalties, in that order.</summary>
    public static void ApplyEdits<TEditor>(ref TEditor editor, SamplingState state, IReadOnlyCollection<int> eosTokenIds)
        where TEditor : ILogitsEditor, allows ref struct
    {
        var p = state.Params;
        if (p.BadWordsTokenIds is { Count: > 0 } badWords)
            ApplyBadWords(ref editor, badWords, state.OutputTokenIds);
        if (state.OutputTokenIds.Count < p.MinTokens)
            ApplyMinTokens(ref editor, p.StopTokenIds, eosTokenIds);
        if (state.LogitBiasTokenIds is { } biasIds)
            ApplyLogitBias(ref editor, biasIds, state.LogitBiasValues!);
        ApplyPenalties(ref editor, state);
    }

    /// <summary>
    /// vLLM's bad_words rule: for each banned token sequence whose all-but-last tokens equal the tail of the
    /// output so far, the last token gets -inf (a one-token bad word is always banned). The output only,
    /// not the prompt, as in vLLM's <c>apply_bad_words</c>.
    /// </summary>
    private static void ApplyBadWords<TEditor>(ref TEditor editor, IReadOnlyList<int[]> badWordsTokenIds, IReadOnlyList<int> outputTokenIds)
        where TEditor : ILogitsEditor, allows ref struct
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
                editor.Mask(badWord[^1]);
        }
    }

    /// <summary>While fewer than min_tokens tokens are out, EOS and stop_token_ids get -inf (vLLM masks the
    /// EOS ids even with ignore_eos: min_tokens is about the length, not about what stops it).</summary>
    private static void ApplyMinTokens<TEditor>(ref TEditor editor, IReadOnlyList<int> stopTokenIds, IReadOnlyCollection<int> eosTokenIds)
        where TEditor : ILogitsEditor, allows ref struct
    {
        for (int i = 0; i < stopTokenIds.Count; i++)
            editor.Mask(stopTokenIds[i]);
        foreach (int id in eosTokenIds)
        {
            if ((uint)id < (uint)editor.VocabSize)
                editor.Mask(id);
        }
    }

    private static void ApplyLogitBias<TEditor>(ref TEditor editor, int[] tokenIds, float[] clampedBias)
        where TEditor : ILogitsEditor, allows ref struct
    {
        for (int i = 0; i < tokenIds.Length; i++)
            editor.Add(tokenIds[i], clampedBias[i]);
    }

    /// <summary>
    /// vLLM's <c>apply_penalties</c>: the repetition penalty (CTRL, Keskar et al. 2019) divides positive and
    /// multiplies negative logits of every token seen in the prompt or the output, once per token; then
    /// <c>logit -= frequency·count + presence·(count &gt; 0)</c> over output tokens only (OpenAI's formula).
    /// </summary>
    private static void ApplyPenalties<TEditor>(ref TEditor editor, SamplingState state)
        where TEditor : ILogitsEditor, allows ref struct
    {
        var p = state.Params;
        float repetition = p.RepetitionPenalty;
        if (repetition != 1f)
        {
            foreach (int id in state.PromptTokenSet!)
                ApplyRepetition(ref editor, id, repetition);
            foreach (int id in state.OutputTokenCounts.Keys)
            {
                if (!state.PromptTokenSet.Contains(id))
                    ApplyRepetition(ref editor, id, repetition);
            }
        }

        if (p.FrequencyPenalty != 0f || p.PresencePenalty != 0f)
        {
            // Two subtractions, in vLLM's order, so the rounding matches.
            foreach (var (id, count) in state.OutputTokenCounts)
            {
                editor.Subtract(id, p.FrequencyPenalty * count);
                editor.Subtract(id, p.PresencePenalty);
            }
        }
    }

    private static void ApplyRepetition<TEditor>(ref TEditor editor, int id, float penalty)
        where TEditor : ILogitsEditor, allows ref struct
    {
        // Out-of-vocabulary prompt ids are rejected at admission; the guard keeps a bad caller from
        // turning into an IndexOutOfRange inside the engine loop.
        if ((uint)id < (uint)editor.VocabSize)
            editor.Repetition(id, penalty);
    }
}

/// <summary>The edits a logits processor makes to single tokens.</summary>
internal interface ILogitsEditor
{
    int VocabSize { get; }

    void Mask(int tokenId);

    void Add(int tokenId, float value);

    void Subtract(int tokenId, float value);

    /// <summary>x &gt; 0 ? x / penalty : x · penalty.</summary>
    void Repetition(int tokenId, float penalty);
}

/// <summary>Applies the edits to a row of logits on the host as they come.</summary>
internal ref struct RowLogitsEditor(Span<float> logits) : ILogitsEditor
{
    private readonly Span<float> _logits = logits;

    public readonly int VocabSize => _logits.Length;

    public readonly void Mask(int tokenId) => _logits[tokenId] = float.NegativeInfinity;

    public readonly void Add(int tokenId, float value) => _logits[tokenId] += value;

    public readonly void Subtract(int tokenId, float value) => _logits[tokenId] -= value;

    public readonly void Repetition(int tokenId, float penalty)
    {
        float x = _logits[tokenId];
        _logits[tokenId] = x > 0 ? x / penalty : x * penalty;
    }
}

/// <summary>Records the edits, in order, for a device to apply (<see cref="IDeviceSampler"/>).</summary>
internal readonly struct RecordingLogitsEditor(List<LogitEdit> edits, int vocabSize) : ILogitsEditor
{
    public int VocabSize => vocabSize;

    public void Mask(int tokenId) => edits.Add(new LogitEdit(tokenId, LogitEditOp.Mask, 0f));

    public void Add(int tokenId, float value) => edits.Add(new LogitEdit(tokenId, LogitEditOp.Add, value));

    public void Subtract(int tokenId, float value) => edits.Add(new LogitEdit(tokenId, LogitEditOp.Subtract, value));

    public void Repetition(int tokenId, float penalty) => edits.Add(new LogitEdit(tokenId, LogitEditOp.Repetition, penalty));
}
