using Celer.Models.Backend;

namespace Celer.Engine.KvCache;

/// <summary>One request's blocks loaded back from the host tier; <see cref="LoadId"/> names it when the runner reports it done.</summary>
public sealed record KvLoad(long LoadId, IReadOnlyList<KvBlockCopy> Blocks);

/// <summary>
/// A step's copies between the device cache and the host tier, in the order the scheduler decided them: every store
/// before every load (a load may read a block stored in the same step), each list in its own order (a host block may be
/// stored twice in one step; the later store wins).
/// </summary>
public sealed record KvTransfers(IReadOnlyList<KvBlockCopy> Stores, IReadOnlyList<KvLoad> Loads)
{
    public static KvTransfers None { get; } = new([], []);

    public bool IsEmpty => Stores.Count == 0 && Loads.Count == 0;
}
