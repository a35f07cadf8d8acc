namespace Celer.Engine;

/// <summary>
/// What the sampler keeps per sequence between steps: the (validated) params, the prompt, the output
/// tokens so far with their counts (for penalties, bad words and min_tokens), and the sequence's own
/// random generator, so a seeded sequence draws the same tokens whatever else is in the batch.
/// Not thread-safe: one sequence is sampled by one thread at a time.
/// </summary>
public sealed class SamplingState
{
    private readonly List<int> _outputTokenIds = [];

    /// <param name="parameters">Params already checked by <see cref="SamplingParams.Validate"/>.</param>
    /// <param name="promptTokenIds">The prompt; the repetition penalty applies to its tokens too (vLLM, HF).</param>
    /// <param name="seed">The effective seed of this sequence (<see cref="SeedSource.EffectiveSeed"/>).</param>
    public SamplingState(SamplingParams parameters, IReadOnlyList<int> promptTokenIds, long seed)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(promptTokenIds);
        Params = parameters;
        PromptTokenIds = promptTokenIds;
        Seed = seed;
        Generator = new SequenceGenerator(seed);

        Temperature = parameters.IsGreedy ? 0f : Math.Max(parameters.Temperature, SamplingParams.MinRandomTemperature);

        if (parameters.RepetitionPenalty != 1f)
            PromptTokenSet = [.. promptTokenIds];

        if (parameters.LogitBias is { Count: > 0 } bias)
        {
            LogitBiasTokenIds = new int[bias.Count];
            LogitBiasValues = new float[bias.Count];
            int i = 0;
            foreach (var (tokenId, value) in bias)
            {
                LogitBiasTokenIds[i] = tokenId;
                LogitBiasValues[i] = Math.Clamp(value, -SamplingParams.MaxLogitBias, SamplingParams.MaxLogitBias);
                i++;
            }
        }

        if (parameters.Grammar is { } grammar)
        {
            _grammar = new Celer.Grammars.GrammarMatcher(grammar);
            _reasoningEnd = parameters.StructuredOutputs?.ReasoningEndTokenIds is { Count: > 0 } end ? [.. end] : null;
        }

        if (parameters.AllowedTokenIds is { Count: > 0 } allowed)
        {
            var sorted = allowed.Distinct().ToArray();
            Array.Sort(sorted);
            SortedAllowedTokenIds = sorted;
        }
    }

    public SamplingParams Params { get; }
    public IReadOnlyList<int> PromptTokenIds { get; }
    public IReadOnlyList<int> OutputTokenIds => _outputTokenIds;
    public long Seed { get; }

    /// <summary>The temperature the sampler divides by: 0 for greedy, else at least 0.01 (vLLM).</summary>
    public float Temperature { get; }

    internal SequenceGenerator Generator { get; }

    /// <summary>How many times each token occurs in the output (frequency/presence penalties).</summary>
    internal Dictionary<int, int> OutputTokenCounts { get; } = [];

    /// <summary>Distinct prompt tokens; built only when a repetition penalty is set.</summary>
    internal HashSet<int>? PromptTokenSet { get; }

    internal int[]? LogitBiasTokenIds { get; }
    internal float[]? LogitBiasValues { get; }   // clamped to ±100
    internal int[]? SortedAllowedTokenIds { get; }

    /// <summary>
    /// Structured outputs: where the output stands in its grammar, which decides the tokens allowed next; null before a
    /// reasoning model's end of thinking (the thinking is free) and for unconstrained requests.
    /// </summary>
    internal Celer.Grammars.GrammarMatcher? Grammar => _reasoningEnd is null ? _grammar : null;

    private readonly Celer.Grammars.GrammarMatcher? _grammar;

    // The end-of-thinking token sequence still awaited; null once it was seen (or when there is none).
    private int[]? _reasoningEnd;

    /// <summary>Records the token sampled (or forced) at this step.</summary>
    public void Append(int tokenId)
    {
        _outputTokenIds.Add(tokenId);
        OutputTokenCounts[tokenId] = OutputTokenCounts.GetValueOrDefault(tokenId) + 1;
        if (_reasoningEnd is { } end)
        {
            // Still thinking, which the grammar does not see; once this token completes the sequence it starts with the next.
            if (tokenId == end[^1] && EndsWith(end))
                _reasoningEnd = null;
            return;
        }

        // A token the grammar refuses can only be the fallback of a row whose every token was masked (the grammar
        // and min_tokens or bad words contradicting each other); the grammar then stays where it was.
        Grammar?.TryAccept(tokenId);
    }

    /// <summary>Whether the prompt followed by the output so far ends with <paramref name="sequence"/>.</summary>
    private bool EndsWith(int[] sequence)
    {
        int outputCount = _outputTokenIds.Count;
        if (sequence.Length > PromptTokenIds.Count + outputCount)
            return false;
        for (int k = 1; k <= sequence.Length; k++)
        {
            int token = k <= outputCount ? _outputTokenIds[outputCount - k] : PromptTokenIds[PromptTokenIds.Count - (k - outputCount)];
            if (token != sequence[^k])
                return false;
        }
        return true;
    }
}
