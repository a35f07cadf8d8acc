namespace Celer.Engine;

/// <summary>
/// A snapshot of the engine for <c>/metrics</c>: vLLM's gauges (<c>vllm:num_requests_running</c>,
/// <c>vllm:num_requests_waiting</c>, <c>vllm:kv_cache_usage_perc</c>) and counters since start
/// (<c>vllm:prefix_cache_queries</c>/<c>hits</c> in tokens, <c>vllm:num_preemptions</c>,
/// <c>vllm:prompt_tokens</c>, <c>vllm:generation_tokens</c>, <c>vllm:request_success</c> by reason, and speculative
/// decoding's <c>vllm:spec_decode_*</c>).
/// </summary>
public sealed record EngineStats(
    int NumRunning,
    int NumWaiting,
    float KvCacheUsage,
    long PrefixCacheQueries,
    long PrefixCacheHits,
    long NumPreemptions,
    long PromptTokens,
    long GenerationTokens,
    long NumStepsRun,
    IReadOnlyDictionary<FinishReason, long> RequestSuccess)
{
    public static EngineStats Empty { get; } = new(0, 0, 0, 0, 0, 0, 0, 0, 0, new Dictionary<FinishReason, long>());

    /// <summary>Speculative decoding's counters since start (all zero without <c>--speculative-config</c>).</summary>
    public Scheduling.SpecDecodingStats SpecDecoding { get; init; } = new();

    /// <summary>The host KV tier's counters since start and its usage; null without <c>--kv-offload-size</c>.</summary>
    public KvOffloadTotals? KvOffload { get; init; }
}

/// <summary>
/// The host KV tier since start, for <c>/metrics</c>: its counters (<see cref="KvCache.KvOffloadStats"/>), the bytes they moved
/// each way (vLLM's <c>kv_offload_store_bytes</c>, <c>kv_offload_load_bytes</c>) and the fraction of its blocks in use.
/// </summary>
public sealed record KvOffloadTotals(KvCache.KvOffloadStats Counters, long StoreBytes, long LoadBytes, float Usage);

/// <summary>
/// One finished user request's timings (seconds on <see cref="EngineClock"/>) and sizes, from which
/// vLLM's histograms are made: TTFT = FirstTokenTime − ArrivalTime; e2e = FinishedTime − ArrivalTime;
/// queue time = FirstScheduledTime − QueuedTime; prefill = FirstTokenTime − FirstScheduledTime;
/// decode = LastTokenTime − FirstTokenTime. Times not reached (an abort before scheduling) are 0.
/// <see cref="NumGenerationTokens"/> sums the n samples; <see cref="MaxNumGenerationTokens"/> is the longest one.
/// </summary>
public sealed record RequestMetrics(
    double ArrivalTime,
    double QueuedTime,
    double FirstScheduledTime,
    double FirstTokenTime,
    double LastTokenTime,
    double FinishedTime,
    int NumPromptTokens,
    int NumGenerationTokens,
    int NumCachedTokens,
    int N,
    int? MaxTokens,
    FinishReason FinishReason,
    int MaxNumGenerationTokens)
{
    public double TimeToFirstToken => FirstTokenTime > 0 ? FirstTokenTime - ArrivalTime : 0;
    public double E2eLatency => FinishedTime - ArrivalTime;
    public double QueueTime => FirstScheduledTime > 0 ? FirstScheduledTime - QueuedTime : 0;
    public double PrefillTime => FirstTokenTime > 0 && FirstScheduledTime > 0 ? FirstTokenTime - FirstScheduledTime : 0;
    public double DecodeTime => LastTokenTime > 0 ? LastTokenTime - FirstTokenTime : 0;
    public double InferenceTime => LastTokenTime > 0 && FirstScheduledTime > 0 ? LastTokenTime - FirstScheduledTime : 0;
}

/// <summary>One engine step's stats (vLLM's <c>IterationStats</c> + <c>SchedulerStats</c>).</summary>
/// <param name="InterTokenLatencies">Seconds between consecutive tokens of one sequence, for every
/// sequence that got a token this step after its first (<c>vllm:inter_token_latency_seconds</c>).</param>
/// <param name="TimesToFirstToken">TTFT of sequences that got their first token this step.</param>
public sealed record IterationStats(
    int NumRunning,
    int NumWaiting,
    float KvCacheUsage,
    long PrefixCacheQueries,
    long PrefixCacheHits,
    int NumPreemptions,
    int NumPromptTokens,
    int NumGenerationTokens,
    int NumScheduledTokens,
    IReadOnlyList<double> TimesToFirstToken,
    IReadOnlyList<double> InterTokenLatencies);

/// <summary>What the server's Prometheus exporter subscribes to. Called on the engine loop's
/// thread: implementations must be quick and must not throw.</summary>
public interface IEngineStatsListener
{
    void OnIteration(IterationStats stats);

    void OnRequestFinished(string requestId, RequestMetrics metrics);
}
