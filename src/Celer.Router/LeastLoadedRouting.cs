namespace Celer.Router;

/// <summary>
/// The candidate with the lowest <see cref="BackendLoad.Score"/> (its scraped queue, batch and KV usage plus what the
/// router sent it since), as llm-d's queue and KV-utilization scorers pick. Equal scores (idle backends, or no scrape yet)
/// take turns, so an idle pool still spreads its requests.
/// </summary>
public sealed class LeastLoadedRouting : IRoutingLogic
{
    private readonly RoundRobinRouting _tieBreak = new();

    public Backend Pick(IReadOnlyList<Backend> candidates, RouteRequest request)
    {
        var lowest = double.PositiveInfinity;
        var tied = new List<Backend>(candidates.Count);
        foreach (var candidate in candidates)
        {
            var score = candidate.Load.Score;
            if (score < lowest)
            {
                lowest = score;
                tied.Clear();
            }
            if (score == lowest)
                tied.Add(candidate);
        }
        return tied.Count == 1 ? tied[0] : _tieBreak.Pick(tied, request);
    }
}
