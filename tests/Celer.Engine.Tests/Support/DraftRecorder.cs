using Celer.Engine.Scheduling;

namespace Celer.Engine.Tests.Support;

/// <summary>
/// The real runner with a record of every draft it proposed: per request, the drafts that followed its first L tokens
/// (prompt and output so far), keyed by L. Only for synchronous steps (speculative decoding turns async scheduling off).
/// </summary>
internal sealed class DraftRecorder(IModelExecutor inner) : IModelExecutor
{
    private readonly Dictionary<string, List<int>> _tokens = new(StringComparer.Ordinal);

    /// <summary>(request id, tokens known) → the drafts proposed to follow them.</summary>
    public Dictionary<(string RequestId, int Length), int[]> Drafts { get; } = [];

    public int NumKvBlocks => inner.NumKvBlocks;

    public int NumHostKvBlocks => inner.NumHostKvBlocks;

    public long HostKvBlockBytes => inner.HostKvBlockBytes;

    public ModelRunnerOutput Execute(SchedulerOutput schedulerOutput)
    {
        foreach (NewRequestData request in schedulerOutput.ScheduledNewRequests)
        {
            _tokens.TryAdd(request.RequestId, [.. request.PromptTokenIds]);
        }

        ModelRunnerOutput output = inner.Execute(schedulerOutput);
        foreach ((string id, IReadOnlyList<int> sampled) in output.SampledTokenIds)
        {
            _tokens[id].AddRange(sampled);
        }

        foreach ((string id, int[] drafts) in output.DraftTokenIds ?? new Dictionary<string, int[]>())
        {
            Drafts[(id, _tokens[id].Count)] = drafts;
        }

        return output;
    }

    public void Dispose() => inner.Dispose();
}
