namespace Celer.Engine.Scheduling;

/// <summary>A request the runner sees for the first time: everything it needs to cache its state.</summary>
public sealed record NewRequestData(
    string RequestId,
    IReadOnlyList<int> PromptTokenIds,
    SamplingParams SamplingParams,
    IReadOnlyList<int> BlockIds,
    int NumComputedTokens,
    PoolingParams? PoolingParams = null)
{
    /// <summary>The prompt's images (<see cref="Request.Images"/>).</summary>
    public IReadOnlyList<Multimodal.PromptImage> Images { get; init; } = [];
}

/// <summary>
/// A request the runner already knows, as a diff. When <see cref="ResumedFromPreemption"/> is set,
/// the runner's old state is stale: <see cref="NewBlockIds"/> replace the block table and
/// <see cref="NewTokenIds"/> holds every output token so far. Otherwise the block ids are appended and
/// <see cref="NewTokenIds"/> is empty: the runner appends the tokens it sampled itself (vLLM v1), which is what
/// lets a step be scheduled before the previous step's tokens reach the scheduler.
/// </summary>
public sealed record CachedRequestData(
    string RequestId,
    bool ResumedFromPreemption,
    IReadOnlyList<int> NewTokenIds,
    IReadOnlyList<int> NewBlockIds,
    int NumComputedTokens);

/// <summary>
/// One step's whole contract between scheduler and runner (vLLM's <c>SchedulerOutput</c>).
/// <c>NumComputedTokens</c> in the request data is the count before this step; the step computes
/// <c>NumScheduledTokens[id]</c> more. <see cref="SampledRequestIds"/> lists the requests whose
/// scheduled tokens reach the end of their sequence, so this step samples a token for them; a
/// prefill chunk that stops short of the prompt's end samples nothing. A preempted request's
/// blocks are gone but the runner keeps its prompt and parameters: it comes back as a resumed
/// <see cref="CachedRequestData"/>. Finished ids are dropped for good. A step with no tokens still goes to the runner when
/// it carries transfers or loads are still running, so their completion is seen.
/// </summary>
public sealed record SchedulerOutput(
    IReadOnlyList<NewRequestData> ScheduledNewRequests,
    IReadOnlyList<CachedRequestData> ScheduledCachedRequests,
    IReadOnlyDictionary<string, int> NumScheduledTokens,
    int TotalNumScheduledTokens,
    IReadOnlySet<string> SampledRequestIds,
    IReadOnlySet<string> PreemptedRequestIds,
    IReadOnlySet<string> FinishedRequestIds)
{
    public bool IsEmpty => TotalNumScheduledTokens == 0;

    /// <summary>
    /// Speculative decoding: per request, the draft tokens this step computes after its last known token (all or the
    /// first of its drafts, as the budget allowed), whose logits verify them; absent for requests without drafts.
    /// </summary>
    public IReadOnlyDictionary<string, int[]> ScheduledSpecTokens { get; init; } = new Dictionary<string, int[]>();

    /// <summary>
    /// Copies between the device cache and the host tier, to queue before this step's forward pass: stores of blocks this
    /// step's allocations evicted (or a swapped-out request's), then loads, which the runner reports done later
    /// (<see cref="ModelRunnerOutput.FinishedKvLoads"/>). No request in this step reads a block still being loaded.
    /// </summary>
    public KvCache.KvTransfers KvTransfers { get; init; } = KvCache.KvTransfers.None;
}
