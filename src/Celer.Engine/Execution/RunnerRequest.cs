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

    /// <summary>The prompt's images, whose features the model reads at their placeholder positions.</summary>
    public IReadOnlyList<Multimodal.PromptImage> Images { get; init; } = [];

    /// <summary>A pooling model's request: what its prompt's hidden states pooled to so far.</summary>
    public PoolingState? Pooling { get; init; }

    /// <summary>The request's row in the sampling of the step still running (async scheduling); −1 when it has none.</summary>
    public int InFlightSampleRow { get; set; } = -1;

    /// <summary>
    /// Draft model: positions [0, DraftComputed) of the draft's KV cache hold this request's tokens, and
    /// <see cref="DraftFed"/> the draft tokens it was fed at the positions after them (valid as far as the target
    /// accepts them). Zero after a preemption: the request's blocks are new.
    /// </summary>
    public int DraftComputed { get; set; }

    public int[] DraftFed { get; set; } = [];

    /// <summary>Records a sampled token: the next input token and the sampler's history.</summary>
    public void Append(int tokenId)
    {
        TokenIds.Add(tokenId);
        Sampling.Append(tokenId);
    }
}
