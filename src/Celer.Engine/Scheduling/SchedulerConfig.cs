namespace Celer.Engine.Scheduling;

/// <summary>The scheduler's resolved limits (vLLM's <c>SchedulerConfig</c> + <c>CacheConfig</c>),
/// built from <see cref="EngineArgs"/> once the model's context length and the KV pool size are known.
/// <see cref="AsyncScheduling"/>: each step is scheduled while the previous one still runs, its sampled tokens
/// counted as placeholders (<see cref="Request.NumOutputPlaceholders"/>) until they arrive.
/// <see cref="NumLookaheadTokens"/>: slots allocated past each request's scheduled tokens, where a draft model writes
/// its drafts' KV (vLLM's <c>num_lookahead_tokens</c>).</summary>
public sealed record SchedulerConfig(
    int MaxNumSeqs,
    int MaxNumBatchedTokens,
    int MaxModelLen,
    int BlockSize,
    int NumKvBlocks,
    bool EnablePrefixCaching = true,
    bool EnableChunkedPrefill = true,
    SchedulingPolicy Policy = SchedulingPolicy.Fcfs,
    bool AsyncScheduling = false,
    int NumLookaheadTokens = 0);
