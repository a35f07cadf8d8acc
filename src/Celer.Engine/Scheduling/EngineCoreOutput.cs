namespace Celer.Engine.Scheduling;

/// <summary>
/// What one step did for one request (vLLM's <c>EngineCoreOutput</c>): the tokens appended, their
/// logprobs, prompt logprobs computed, and the finish reason when the core finished it
/// (EOS, stop token id, max_tokens, max_model_len). Stop strings are found later, on text.
/// </summary>
public sealed record EngineCoreOutput(
    string RequestId,
    IReadOnlyList<int> NewTokenIds,
    IReadOnlyList<PositionLogprobs>? NewLogprobs,
    PromptLogprobsChunk? PromptLogprobs,
    FinishReason? FinishReason,
    object? StopReason,
    int NumCachedTokens,
    double QueuedTime,
    double FirstScheduledTime)
{
    /// <summary>A pooling request's pooled vector, on its finishing output.</summary>
    public float[]? PoolerOutput { get; init; }
}

/// <summary>The scheduler's gauges and counters for one step (vLLM's <c>SchedulerStats</c>).</summary>
public sealed record SchedulerStats(
    int NumRunning,
    int NumWaiting,
    float KvCacheUsage,
    KvCache.PrefixCacheStats PrefixCache,
    int NumPreemptions,
    int NumScheduledTokens)
{
    /// <summary>Speculative decoding's counters since the previous stats (all zero without drafts).</summary>
    public SpecDecodingStats SpecDecoding { get; init; } = new();

    /// <summary>The host KV tier's counters since the previous stats (all zero without one).</summary>
    public KvCache.KvOffloadStats KvOffload { get; init; }
}
