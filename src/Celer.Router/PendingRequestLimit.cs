namespace Celer.Router;

/// <summary>
/// The router-wide bound on client requests in flight (<c>--max-pending-requests</c>): a forwarded request takes a slot
/// before its body is read and gives it back when its answer has been copied to its end, its client has left, or it
/// failed. A request finding every slot taken is refused at once with 503 and <c>Retry-After</c> (BAD_INPUT.md #26), never
/// queued: under a load above what the backends answer, the requests waiting would otherwise grow without end, each
/// holding a client connection, its body, a backend connection and a copy buffer.
/// </summary>
/// <remarks>
/// Lock-free, since every forwarded request passes through it (some 20,000 a second on 2 cores): a compare-and-swap
/// loop, so a request is refused only when the slots are really all taken, never because another one was refused at
/// the same moment.
/// </remarks>
public sealed class PendingRequestLimit(int maxPendingRequests)
{
    private int _inFlight;

    public int MaxPendingRequests => maxPendingRequests;

    /// <summary>Slots taken now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Takes a slot; false when all <see cref="MaxPendingRequests"/> are taken.</summary>
    public bool TryEnter()
    {
        var current = Volatile.Read(ref _inFlight);
        while (current < maxPendingRequests)
        {
            var seen = Interlocked.CompareExchange(ref _inFlight, current + 1, current);
            if (seen == current)
                return true;
            current = seen;
        }
        return false;
    }

    /// <summary>Gives back a slot <see cref="TryEnter"/> took.</summary>
    public void Exit() => Interlocked.Decrement(ref _inFlight);
}
