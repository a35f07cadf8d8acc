namespace Celer.Server.Serving;

/// <summary>
/// The server's gate in front of the engine. The engine queues whatever it cannot run yet, so the
/// gate only bounds that queue (<see cref="ServerOptions.MaxPendingRequests"/>) and closes when the
/// server drains for shutdown; both answer 503 with <c>Retry-After</c>, which OpenAI clients retry
/// (BAD_INPUT.md #25, #26).
/// </summary>
internal sealed class AdmissionControl(int maxPendingRequests)
{
    /// <summary>Seconds a refused client is told to wait: a few decode steps' worth of queue drain.</summary>
    public const int RetryAfterSeconds = 1;

    private int _inFlight;
    private volatile bool _draining;

    public int InFlight => Volatile.Read(ref _inFlight);

    public bool IsDraining => _draining;

    /// <summary>Stops admitting; requests already admitted run to completion.</summary>
    public void BeginDraining() => _draining = true;

    /// <summary>Admits <paramref name="count"/> engine requests (a batch of prompts counts each), or throws 503.</summary>
    public Lease Enter(int count)
    {
        if (_draining)
            throw OpenAIException.Unavailable("The server is shutting down and no longer accepts requests.", RetryAfterSeconds);
        var after = Interlocked.Add(ref _inFlight, count);
        if (after > maxPendingRequests)
        {
            Interlocked.Add(ref _inFlight, -count);
            throw OpenAIException.Unavailable(
                $"The server is overloaded: {maxPendingRequests} requests are already queued or running. Retry later.", RetryAfterSeconds);
        }
        return new Lease(this, count);
    }

    /// <summary>Releases the admitted slots when the response is done (or the client went away).</summary>
    public sealed class Lease(AdmissionControl owner, int count) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
                Interlocked.Add(ref owner._inFlight, -count);
        }
    }
}
