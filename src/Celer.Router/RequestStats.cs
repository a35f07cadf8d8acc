namespace Celer.Router;

/// <summary>
/// What production-stack's router keeps per backend for its <c>vllm:current_qps</c>, <c>vllm:avg_latency</c>,
/// <c>vllm:num_prefill_requests</c> and <c>vllm:num_decoding_requests</c> (its <c>RequestStatsMonitor</c>): requests sent
/// in a sliding window, the mean end-to-end latency of those that finished in it, and the requests now waiting for the
/// first byte of their answer ("prefill") or being copied back ("decoding").
/// </summary>
/// <remarks>
/// production-stack keeps every timestamp of the window in a deque; at the router's 20,000 requests/s and its default
/// 60 s window that would be over a million entries a backend. Here the window is <see cref="Steps"/> slots of a
/// sixtieth of it, each with its counts and latency sum, so the memory is fixed and a request leaves the window between
/// 59/60 of it and all of it after it happened.
/// </remarks>
public sealed class RequestStats
{
    /// <summary>Slots of the window: a 60 s window (production-stack's default) moves in steps of one second.</summary>
    public const int Steps = 60;

    private readonly TimeProvider _clock;
    private readonly TimeSpan _window;
    private readonly long _stepTicks;
    private readonly Lock _lock = new();
    private readonly Slot[] _slots = new Slot[Steps];
    private int _prefill;
    private int _decoding;

    /// <param name="window">production-stack's <c>--request-stats-window</c>.</param>
    /// <param name="clock">The clock the window and the latencies are timed on (a test's own moves only when told).</param>
    public RequestStats(TimeSpan window, TimeProvider clock)
    {
        _window = window;
        _clock = clock;
        _stepTicks = Math.Max(1, (long)(window.TotalSeconds * clock.TimestampFrequency / Steps));
        for (var i = 0; i < Steps; i++)
            _slots[i].Step = long.MinValue;
    }

    /// <summary>One request to the backend, from sending it to the end of its answer.</summary>
    public sealed class Request
    {
        internal Request(long sent) => Sent = sent;

        internal long Sent { get; }

        internal bool FirstByteSeen { get; set; }

        internal bool Ended { get; set; }
    }

    /// <summary>A request is being sent: it counts toward the rate now, and waits for its first byte ("prefill").</summary>
    public Request Begin()
    {
        var now = _clock.GetTimestamp();
        lock (_lock)
        {
            SlotAt(now).Arrivals++;
            _prefill++;
        }
        return new Request(now);
    }

    /// <summary>The first byte of the answer's body arrived (or the body ended empty): the request is "decoding" from now.</summary>
    public void FirstByte(Request request)
    {
        lock (_lock)
        {
            if (request.FirstByteSeen || request.Ended)
                return;
            request.FirstByteSeen = true;
            _prefill--;
            _decoding++;
        }
    }

    /// <summary>
    /// The request is over. Only an answer copied to its end has an end-to-end latency (production-stack times only those
    /// too); one that could not be sent, broke off or whose client left just stops counting as in progress.
    /// </summary>
    public void End(Request request, bool answered)
    {
        var now = _clock.GetTimestamp();
        lock (_lock)
        {
            if (request.Ended)
                return;
            request.Ended = true;
            if (request.FirstByteSeen)
                _decoding--;
            else
                _prefill--;
            if (answered)
            {
                ref var slot = ref SlotAt(now);
                slot.Completions++;
                slot.LatencySeconds += (double)(now - request.Sent) / _clock.TimestampFrequency;
            }
        }
    }

    /// <summary>The numbers at this moment.</summary>
    /// <param name="RequestsPerSecond">Requests sent in the window over the window's length (<c>vllm:current_qps</c>).</param>
    /// <param name="AverageLatencySeconds">Mean latency of the answers that ended in the window; -1 when none did, as production-stack writes it (<c>vllm:avg_latency</c>).</param>
    /// <param name="Prefill">Requests sent whose answer's first byte has not come (<c>vllm:num_prefill_requests</c>).</param>
    /// <param name="Decoding">Requests whose answer is being copied back (<c>vllm:num_decoding_requests</c>).</param>
    public readonly record struct Snapshot(double RequestsPerSecond, double AverageLatencySeconds, int Prefill, int Decoding);

    public Snapshot Read()
    {
        var step = _clock.GetTimestamp() / _stepTicks;
        long arrivals = 0, completions = 0;
        double latency = 0;
        lock (_lock)
        {
            foreach (var slot in _slots)
            {
                // The current step and the Steps - 1 before it; a slot last written earlier holds an older step's counts.
                if (slot.Step > step - Steps && slot.Step <= step)
                {
                    arrivals += slot.Arrivals;
                    completions += slot.Completions;
                    latency += slot.LatencySeconds;
                }
            }
            return new Snapshot(arrivals / _window.TotalSeconds, completions == 0 ? -1 : latency / completions, _prefill, _decoding);
        }
    }

    /// <summary>The slot of the step <paramref name="timestamp"/> falls in, emptied first if it held an older step. Under the lock.</summary>
    private ref Slot SlotAt(long timestamp)
    {
        var step = timestamp / _stepTicks;
        ref var slot = ref _slots[(int)(((step % Steps) + Steps) % Steps)];
        if (slot.Step != step)
            slot = new Slot { Step = step };
        return ref slot;
    }

    private struct Slot
    {
        public long Step;
        public int Arrivals;
        public int Completions;
        public double LatencySeconds;
    }
}
