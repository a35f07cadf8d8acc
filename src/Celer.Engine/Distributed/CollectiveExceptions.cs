namespace Celer.Engine.Distributed;

/// <summary>A rank of a tensor-parallel group died while another waited for it at a collective: the executor turns the
/// engine dead rather than wait forever.</summary>
public sealed class CollectivePeerDiedException(string message, int rank) : Exception(message)
{
    /// <summary>The rank that died.</summary>
    public int Rank { get; } = rank;
}

/// <summary>A collective's wait outlasted the group's timeout while the ranks it waited for were still alive.</summary>
public sealed class CollectiveTimeoutException(string message, IReadOnlyList<int> stuckRanks) : TimeoutException(message)
{
    /// <summary>The ranks that had not arrived at the collective, lowest first.</summary>
    public IReadOnlyList<int> StuckRanks { get; } = stuckRanks;
}

/// <summary>Another rank left the group (it was disposed, or one of its own collectives failed) while this one waited
/// for a collective that can no longer complete.</summary>
public sealed class CollectiveGroupClosedException(string message, int rank) : Exception(message)
{
    /// <summary>The rank that left.</summary>
    public int Rank { get; } = rank;
}
