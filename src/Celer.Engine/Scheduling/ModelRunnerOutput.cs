namespace Celer.Engine.Scheduling;

/// <summary>
/// Prompt logprobs computed in one step for a slice of the prompt. <see cref="StartPosition"/> is
/// the prompt position (≥ 1) of the first entry: position p holds the logprob of prompt token p
/// given tokens 0..p−1. Position 0 has none (vLLM reports null there).
/// </summary>
public sealed record PromptLogprobsChunk(int StartPosition, IReadOnlyList<PositionLogprobs> Logprobs);

/// <summary>
/// What the runner returns for a step (vLLM's <c>ModelRunnerOutput</c>). Keyed by request id:
/// the sampled token ids (a list, so speculative decoding can accept several), the logprobs of
/// each when the request asked for them, and prompt logprobs for the prompt positions computed; with speculative
/// decoding, the drafts proposed to follow each request's new tokens.
/// </summary>
public sealed record ModelRunnerOutput(
    IReadOnlyDictionary<string, IReadOnlyList<int>> SampledTokenIds,
    IReadOnlyDictionary<string, IReadOnlyList<PositionLogprobs>>? Logprobs = null,
    IReadOnlyDictionary<string, PromptLogprobsChunk>? PromptLogprobs = null,
    IReadOnlyDictionary<string, int[]>? DraftTokenIds = null,
    IReadOnlyDictionary<string, float[]>? PoolerOutputs = null)
{
    public static ModelRunnerOutput Empty { get; } = new(new Dictionary<string, IReadOnlyList<int>>());

    /// <summary>The host-tier loads (<see cref="KvCache.KvLoad.LoadId"/>) that finished since the runner last reported any.</summary>
    public IReadOnlyList<long> FinishedKvLoads { get; init; } = [];
}
