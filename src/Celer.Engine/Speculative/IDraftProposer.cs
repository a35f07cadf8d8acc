using Celer.Engine.Execution;

namespace Celer.Engine.Speculative;

/// <summary>
/// What proposes draft tokens after a step (vLLM's proposers): for each request that sampled, up to
/// <see cref="MaxDraftTokens"/> tokens to follow its tokens so far, which the next step verifies. One that holds
/// device memory (a draft model) is <see cref="IDisposable"/>, and the runner that owns it disposes it.
/// </summary>
internal interface IDraftProposer
{
    int MaxDraftTokens { get; }

    /// <summary>Whether a step that sampled <paramref name="batchSize"/> requests proposes drafts (<c>disable_by_batch_size</c>).</summary>
    bool ProposesFor(int batchSize);

    /// <summary>
    /// The drafts of <paramref name="requests"/> (the step's sampled requests that are to draft; their tokens include the
    /// step's new ones); a request without any is left out. Called after every step, with no requests when none drafts:
    /// a proposer that follows the target step by step (an EAGLE head's KV cache) reads <paramref name="step"/>'s rows.
    /// </summary>
    Dictionary<string, int[]> Propose(IReadOnlyList<RunnerRequest> requests, StepPlan step);
}
