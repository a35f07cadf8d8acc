namespace Celer.Server.Serving;

/// <summary>
/// The server's gate in front of the engine. The engine queues whatever it cannot run yet, so the
/// gate only bounds that queue and closes when the server drains for shutdown; both answer 503 with
/// <c>Retry-After</c>, which OpenAI clients retry (BAD_INPUT.md #25, #26). The queue is counted in
/// sequences (every prompt of a batch times its <c>n</c>), the unit of engine work, so one small request
/// cannot queue thousands of them; a request that alone asks for more than the whole queue holds can never
/// be admitted and gets a 400 saying so instead of a 503 no retry could pass. Once the engine loop has died it
/// refuses everything with 503 (#24): the replica is out of service until restarted, and a retry may reach a
/// healthy one.
/// </summary>
/// <param name="maxPendingSequences">Sequences queued or running beyond which requests wait (--max-pending-requests).</param>
/// <param name="isEngineDead">Asked on every admission; null for a gate without an engine behind it.</param>
internal sealed class AdmissionControl(int maxPendingSequences, Func<bool>? isEngineDead = null)
{
    /// <summary>Seconds a refused client is told to wait: a few decode steps' worth of queue drain.</summary>
    public const int RetryAfterSeconds = 1;

    // One lock orders "start draining" against "admit": once BeginDraining has run, no request can slip
    // in, so the drained signal never fires while a late request is still being admitted.
    private readonly Lock _lock = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _inFlight;
    private bool _draining;

    public int InFlight
    {
        get
        {
            lock (_lock)
                return _inFlight;
        }
    }

    public bool IsDraining
    {
        get
        {
            lock (_lock)
                return _draining;
        }
    }

    /// <summary>Stops admitting; requests already admitted run to completion.</summary>
    public void BeginDraining()
    {
        lock (_lock)
        {
            _draining = true;
            if (_inFlight == 0)
                _drained.TrySetResult();
        }
    }

    /// <summary>Completes once draining has begun and every admitted request has finished.</summary>
    public Task WaitForDrainedAsync(CancellationToken cancellationToken) => _drained.Task.WaitAsync(cancellationToken);

    /// <summary>
    /// Admits a request of <paramref name="prompts"/> prompts with <paramref name="n"/> samples each, or throws: 400
    /// when it alone exceeds the queue, 503 when the queue is full now.
    /// </summary>
    /// <param name="promptField">The request field of the prompts ("input" for embeddings), named by the 400 of a batch.</param>
    public Lease Enter(int prompts, int n, string promptField = "prompt")
    {
        long count = (long)prompts * n;
        if (count > maxPendingSequences)
        {
            throw OpenAIException.BadRequest(
                $"This request asks for {count} sequences ({prompts} prompt(s) x n={n}); the server runs at most {maxPendingSequences} at a time (--max-pending-requests). Split it into smaller requests.",
                prompts > 1 ? promptField : "n");
        }

        lock (_lock)
        {
            if (_draining)
                throw OpenAIException.Unavailable("The server is shutting down and no longer accepts requests.", RetryAfterSeconds);
            if (isEngineDead?.Invoke() == true)
                throw OpenAIException.Unavailable("The engine is not running; no new requests are accepted.", RetryAfterSeconds);
            if (_inFlight + count > maxPendingSequences)
            {
                throw OpenAIException.Unavailable(
                    $"The server is overloaded: {_inFlight} of its {maxPendingSequences} sequences are already queued or running. Retry later.", RetryAfterSeconds);
            }
            _inFlight += (int)count;
        }
        return new Lease(this, (int)count);
    }

    private void Release(int count)
    {
        lock (_lock)
        {
            _inFlight -= count;
            if (_draining && _inFlight == 0)
                _drained.TrySetResult();
        }
    }

    /// <summary>Releases the admitted slots when the response is done (or the client went away).</summary>
    public sealed class Lease(AdmissionControl owner, int count) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
                owner.Release(count);
        }
    }
}
