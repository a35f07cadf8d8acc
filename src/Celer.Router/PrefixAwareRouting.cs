namespace Celer.Router;

/// <summary>
/// Prefix-aware routing (production-stack's <c>prefixaware</c>): a request goes to a backend that was sent the longest
/// prefix of its prompt, whose prefix cache may still hold those KV blocks, so only the rest is prefilled. Among backends
/// with as long a match, and when no backend matches a whole chunk, the least loaded is taken. The prompt is recorded for
/// the chosen backend when it is chosen, not when it answers, so a burst of requests sharing a system prompt follows the
/// first one instead of each missing on a different backend. A backend's entries are dropped when it is ejected.
/// </summary>
public sealed class PrefixAwareRouting : IRoutingLogic
{
    private readonly PrefixTrie _trie;
    private readonly LeastLoadedRouting _leastLoaded = new();

    public PrefixAwareRouting(PrefixTrie trie, BackendPool pool)
    {
        _trie = trie;
        pool.BackendEjected += trie.Remove;
    }

    public Backend Pick(IReadOnlyList<Backend> candidates, RouteRequest request)
    {
        var prompt = request.Prompt;
        var match = _trie.Match(prompt, candidates);
        var backend = _leastLoaded.Pick(match.Backends, request);
        _trie.Insert(prompt, backend);
        return backend;
    }
}
