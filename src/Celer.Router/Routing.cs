using System.Collections.Concurrent;

namespace Celer.Router;

/// <summary>Picks one backend for a request among the candidates: the healthy backends serving its model whose circuit is not open (never empty).</summary>
public interface IRoutingLogic
{
    Backend Pick(IReadOnlyList<Backend> candidates, RouteRequest request);
}

/// <summary>Each model's backends in turn, one counter per model (production-stack's <c>RoundRobinRouter</c>).</summary>
public sealed class RoundRobinRouting : IRoutingLogic
{
    private readonly ConcurrentDictionary<string, StrongBox> _counters = new(StringComparer.Ordinal);

    public Backend Pick(IReadOnlyList<Backend> candidates, RouteRequest request)
    {
        var counter = _counters.GetOrAdd(request.Model, _ => new StrongBox());
        var turn = (uint)Interlocked.Increment(ref counter.Value) - 1;
        return candidates[(int)(turn % (uint)candidates.Count)];
    }

    private sealed class StrongBox
    {
        public int Value;
    }
}

/// <summary>
/// Session affinity (production-stack's <c>SessionRouter</c>): the session header's value is hashed onto a ring of the
/// candidates' virtual nodes, so a user keeps reaching one backend, and ejecting or adding a backend moves only the
/// sessions on its arcs. Requests without the header fall back to round robin.
/// </summary>
public sealed class SessionRouting(string sessionKey) : IRoutingLogic
{
    private readonly RoundRobinRouting _fallback = new();
    private readonly ConcurrentDictionary<string, HashRing> _rings = new(StringComparer.Ordinal);

    public Backend Pick(IReadOnlyList<Backend> candidates, RouteRequest request)
    {
        var session = request.Http.Headers[sessionKey].ToString();
        if (session.Length == 0)
            return _fallback.Pick(candidates, request);
        // Rings are cached by their member set: health changes are rare, requests are not.
        var members = string.Join('\n', candidates.Select(c => c.Url.AbsoluteUri));
        var ring = _rings.GetOrAdd(members, _ => new HashRing(candidates));
        return ring.Lookup(session);
    }
}

/// <summary>A consistent-hash ring: each backend sits at <see cref="VirtualNodes"/> points; a key belongs to the next point clockwise.</summary>
public sealed class HashRing
{
    /// <summary>Points per backend: Ketama's 160, which keeps each backend's share of keys within a few percent of even.</summary>
    public const int VirtualNodes = 160;

    private readonly ulong[] _points;
    private readonly Backend[] _owners;

    public HashRing(IReadOnlyList<Backend> backends)
    {
        var points = new List<(ulong Point, Backend Owner)>(backends.Count * VirtualNodes);
        foreach (var backend in backends)
        {
            for (var i = 0; i < VirtualNodes; i++)
                points.Add((StableHash.Hash($"{backend.Url.AbsoluteUri}#{i}"), backend));
        }
        points.Sort((a, b) => a.Point.CompareTo(b.Point));
        _points = [.. points.Select(p => p.Point)];
        _owners = [.. points.Select(p => p.Owner)];
    }

    public Backend Lookup(string key)
    {
        var index = Array.BinarySearch(_points, StableHash.Hash(key));
        if (index < 0)
            index = ~index;
        return _owners[index == _points.Length ? 0 : index];
    }
}
