using Celer.Engine.Execution;

namespace Celer.Engine.Speculative;

/// <summary>
/// Prompt-lookup drafts (vLLM's ngram method): the sequence's last n tokens, n from the longest allowed down to the
/// shortest, are looked up in its earlier tokens (prompt and output); at the latest earlier occurrence, the tokens that
/// followed it are the draft, up to k of them. Nothing found: no draft, and the step is a plain decode.
/// </summary>
public sealed class NgramProposer(int minN, int maxN, int k, int? disableByBatchSize = null) : IDraftProposer
{
    public int MaxDraftTokens { get; } = k;

    /// <summary>Whether a step that sampled <paramref name="batchSize"/> requests proposes drafts (<c>disable_by_batch_size</c>).</summary>
    public bool ProposesFor(int batchSize) => disableByBatchSize is not { } limit || batchSize < limit;

    Dictionary<string, int[]> IDraftProposer.Propose(IReadOnlyList<RunnerRequest> requests, StepPlan step)
    {
        var drafts = new Dictionary<string, int[]>(requests.Count, StringComparer.Ordinal);
        foreach (RunnerRequest request in requests)
        {
            if (Propose(request.TokenIds, MaxDraftTokens) is { Length: > 0 } next)
            {
                drafts[request.Id] = next;
            }
        }

        return drafts;
    }

    /// <summary>Up to <paramref name="limit"/> (≤ k) draft tokens to follow <paramref name="tokens"/>; empty when none match.</summary>
    public int[] Propose(IReadOnlyList<int> tokens, int limit)
    {
        int count = tokens.Count;
        limit = Math.Min(limit, MaxDraftTokens);
        if (limit <= 0)
        {
            return [];
        }

        for (int n = Math.Min(maxN, count - 1); n >= minN; n--)
        {
            // The suffix tokens[count − n ..] against each earlier window ending before it, latest first.
            for (int start = count - n - 1; start >= 0; start--)
            {
                int i = 0;
                while (i < n && tokens[start + i] == tokens[count - n + i])
                {
                    i++;
                }

                if (i == n)
                {
                    int from = start + n, take = Math.Min(limit, count - from);
                    var draft = new int[take];
                    for (int j = 0; j < take; j++)
                    {
                        draft[j] = tokens[from + j];
                    }

                    return draft;
                }
            }
        }

        return [];
    }
}
