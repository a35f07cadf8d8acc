using System.Collections.Concurrent;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Celer.Router;

/// <summary>Picks one backend for a request among the healthy backends serving its model (never empty).</summary>
public interface IRoutingLogic
{
    Backend Pick(IReadOnlyList<Backend> candidates, string model, HttpRequest request);
}

/// <summary>Each model's backends in turn, one counter per model (production-stack's <c>RoundRobinRouter</c>).</summary>
public sealed class RoundRobinRouting : IRoutingLogic
{
    private readonly ConcurrentDictionary<string, StrongBox> _counters = new(StringComparer.Ordinal);

    public Backend Pick(IReadOnlyList<Backend> candidates, string model, HttpRequest request)
    {
        var counter = _counters.GetOrAdd(model, _ => new StrongBox());
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

    public Backend Pick(IReadOnlyList<Backend> candidates, string model, HttpRequest request)
    {
        var session = request.Headers[sessionKey].ToString();
        if (session.Length == 0)
            return _fallback.Pick(candidates, model, request);
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
                points.Add((Hash($"{backend.Url.AbsoluteUri}#{i}"), backend));
        }
        points.Sort((a, b) => a.Point.CompareTo(b.Point));
        _points = [.. points.Select(p => p.Point)];
        _owners = [.. points.Select(p => p.Owner)];
    }

    public Backend Lookup(string key)
    {
        var index = Array.BinarySearch(_points, Hash(key));
        if (index < 0)
            index = ~index;
        return _owners[index == _points.Length ? 0 : index];
    }

    /// <summary>FNV-1a over UTF-8, then MurmurHash3's 64-bit finalizer so near-identical keys ("user-1", "user-2") spread over the ring.</summary>
    internal static ulong Hash(string key)
    {
        var hash = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(key))
            hash = (hash ^ b) * 1099511628211UL;
        hash ^= hash >> 33;
        hash *= 0xff51afd7ed558ccdUL;
        hash ^= hash >> 33;
        hash *= 0xc4ceb9fe1a85ec53UL;
        hash ^= hash >> 33;
        return hash;
    }
}
