namespace Celer.TestSupport;

/// <summary>One generated position on Celer's side: the token and its top-k logprobs.</summary>
public sealed record GeneratedPosition(int TokenId, float Logprob, IReadOnlyList<(int TokenId, float Logprob)> Top);

/// <summary>
/// vLLM's <c>check_logprobs_close</c>: the two greedy sequences must be equal until the first divergence; at the
/// divergence each side's token must be in the other side's top-k, and comparison stops there. Before it, the
/// chosen token's logprob must agree within <c>tolerance</c>.
/// </summary>
public static class LogprobsComparison
{
    /// <returns>The number of positions that matched exactly (the whole length when there was no divergence).</returns>
    public static int AssertClose(string label, IReadOnlyList<ReferenceLogprobs> reference, IReadOnlyList<GeneratedPosition> actual, float tolerance)
    {
        int n = Math.Min(reference.Count, actual.Count);
        Check(n > 0, $"{label}: nothing to compare");
        for (int i = 0; i < n; i++)
        {
            ReferenceLogprobs r = reference[i];
            GeneratedPosition a = actual[i];
            if (r.TokenId != a.TokenId)
            {
                Check(
                    r.Top.Any(t => t.TokenId == a.TokenId) && a.Top.Any(t => t.TokenId == r.TokenId),
                    $"{label}: step {i}: transformers chose {r.TokenId}, Celer chose {a.TokenId}, and they are not in each other's top-{r.Top.Count}");
                return i;
            }

            Check(
                Math.Abs(r.Logprob - a.Logprob) <= tolerance,
                $"{label}: step {i} token {r.TokenId}: logprob {a.Logprob} vs transformers {r.Logprob} (tolerance {tolerance})");
        }

        return n;
    }

    private static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new LogprobsMismatchException(message);
        }
    }
}

/// <summary>Celer's and the reference's outputs are not close in vLLM's sense.</summary>
public sealed class LogprobsMismatchException(string message) : Exception(message);
