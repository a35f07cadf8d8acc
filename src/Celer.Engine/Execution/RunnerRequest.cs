namespace Celer.Engine.Execution;

/// <summary>
/// The runner's cached view of one sequence (vLLM's <c>CachedRequestState</c>): all its tokens, its block table,
/// how many tokens are in the KV cache, and its sampler state, so a step only needs the scheduler's diffs.
/// </summary>
internal sealed class RunnerRequest(string id, IReadOnlyList<int> promptTokenIds, SamplingState sampling)
{
    public string Id { get; } = id;

    public int PromptLength { get; } = promptTokenIds.Count;

    public List<int> TokenIds { get; } = [.. promptTokenIds];

    public List<int> BlockIds { get; } = [];

    /// <summary>Tokens already in the KV cache before this step, as the scheduler sends it each time it schedules the request.</summary>
    public int NumComputedTokens { get; set; }

    public SamplingState Sampling { get; } = sampling;
}
