namespace Celer.Engine.Distributed;

/// <summary>The process on the other side of a broadcast queue died while this side waited for it: the executor turns
/// the engine dead rather than wait forever.</summary>
public sealed class BroadcastPeerDiedException(string message, int? reader) : Exception(message)
{
    /// <summary>The index of the reader that died, or null when the writer did.</summary>
    public int? Reader { get; } = reader;
}

/// <summary>A broadcast queue's wait outlasted its timeout while the other side was still alive.</summary>
public sealed class BroadcastTimeoutException(string message, IReadOnlyList<int> stuckReaders) : TimeoutException(message)
{
    /// <summary>The readers the writer was still waiting for, lowest first; empty when a reader waited for the writer.</summary>
    public IReadOnlyList<int> StuckReaders { get; } = stuckReaders;
}

/// <summary>The writer closed the queue (was disposed) and this reader has read everything it sent.</summary>
public sealed class BroadcastQueueClosedException(string message) : Exception(message);
