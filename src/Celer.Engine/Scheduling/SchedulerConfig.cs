namespace Celer.Engine.Scheduling;

/// <summary>What becomes of a preempted request's KV (vLLM's old <c>--preemption-mode</c>).</summary>
public enum PreemptionMode
{
    /// <summary>Its blocks are freed (still cached) and what the cache no longer holds is computed again on resumption.</summary>
    Recompute,

    /// <summary>Its computed blocks are stored in the host tier and loaded back on resumption.</summary>
    Swap,
}

/// <summary>The scheduler's resolved limits (vLLM's <c>SchedulerConfig</c> + <c>CacheConfig</c>),
/// built from <see cref="EngineArgs"/> once the model's context length and the KV pool size are known.
/// <see cref="AsyncScheduling"/>: each step is scheduled while the previous one still runs, its sampled tokens
/// counted as placeholders (<see cref="Request.NumOutputPlaceholders"/>) until they arrive.
/// <see cref="NumLookaheadTokens"/>: slots allocated past each request's scheduled tokens, where a draft model writes
/// its drafts' KV (vLLM's <c>num_lookahead_tokens</c>).
/// <see cref="NumHostKvBlocks"/>: blocks of the host tier (<c>--kv-offload-size</c>), 0 for none.
/// <see cref="ModelIdentity"/>: hashed into every block, so no two models share a block (<see cref="KvCache.BlockHasher"/>).</summary>
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
    int NumLookaheadTokens = 0,
    int NumHostKvBlocks = 0,
    PreemptionMode PreemptionMode = PreemptionMode.Recompute,
    string ModelIdentity = "");
