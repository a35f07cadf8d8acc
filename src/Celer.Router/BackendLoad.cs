namespace Celer.Router;

/// <summary>What one scrape of a backend's <c>/metrics</c> said about its load, summed over the engines of its models.</summary>
/// <param name="Waiting">vLLM's <c>num_requests_waiting</c>: requests queued for a slot in the batch or room in the KV cache.</param>
/// <param name="Running">vLLM's <c>num_requests_running</c>: requests in the batch.</param>
/// <param name="KvCacheUsage">vLLM's <c>kv_cache_usage_perc</c>, 0 to 1 (the mean over engines; 0 when not exported).</param>
public sealed record ScrapedLoad(double Waiting, double Running, double KvCacheUsage)
{
    public const string WaitingMetric = "vllm:num_requests_waiting";
    public const string RunningMetric = "vllm:num_requests_running";
    public const string KvCacheUsageMetric = "vllm:kv_cache_usage_perc";

    /// <summary>
    /// The load in an exposition: the series of the three metrics whose <c>model_name</c> is one the backend serves (or
    /// that have none), summed (each data-parallel engine has its own series). KV usage is a fraction of each engine's
    /// own cache, so it is averaged instead. Values that are not finite are left out: a NaN would make every score NaN.
    /// Null when the backend exports neither request gauge (not a vLLM-compatible <c>/metrics</c>).
    /// </summary>
    public static ScrapedLoad? From(IEnumerable<PrometheusSample> samples, Func<string, bool> servesModel)
    {
        double waiting = 0, running = 0, kvSum = 0;
        int requestSeries = 0, kvSeries = 0;
        foreach (var sample in samples)
        {
            if (!double.IsFinite(sample.Value) || (sample.Labels.TryGetValue("model_name", out var model) && !servesModel(model)))
                continue;
            switch (sample.Name)
            {
                case WaitingMetric:
                    waiting += sample.Value;
                    requestSeries++;
                    break;
                case RunningMetric:
                    running += sample.Value;
                    requestSeries++;
                    break;
                case KvCacheUsageMetric:
                    kvSum += sample.Value;
                    kvSeries++;
                    break;
            }
        }
        return requestSeries == 0 ? null : new ScrapedLoad(waiting, running, kvSeries == 0 ? 0 : kvSum / kvSeries);
    }
}

/// <summary>
/// A backend's load as the router sees it: the last scrape of its <c>/metrics</c> plus the requests the router sent it
/// since, which that scrape could not count yet. The least-loaded routing picks the lowest <see cref="Score"/>.
/// </summary>
public sealed class BackendLoad
{
    private readonly Lock _lock = new();
    private ScrapedLoad? _scraped;
    private int _inFlight;
    private int _inFlightSinceScrape;
    private int _scrapeEpoch;

    /// <summary>The last successful scrape; null before one, or after a scrape failed (its numbers may be stale).</summary>
    public ScrapedLoad? Scraped
    {
        get
        {
            lock (_lock)
                return _scraped;
        }
    }

    /// <summary>Requests the router is forwarding to this backend now (sent, answer not yet copied to its end).</summary>
    public int InFlight
    {
        get
        {
            lock (_lock)
                return _inFlight;
        }
    }

    /// <summary>
    /// With a scrape: <c>waiting + running + (requests sent since the scrape and still in flight) + kv_cache_usage</c>;
    /// each request counts 1 whether queued or running (a backend queues only once its batch or KV cache is full, which
    /// the other terms already show), and KV usage, at most 1, decides between backends with as many requests, toward the
    /// one with room for the prompt's blocks. Without a scrape: the requests in flight, the router's own count.
    /// </summary>
    public double Score
    {
        get
        {
            lock (_lock)
            {
                return _scraped is { } load
                    ? load.Waiting + load.Running + _inFlightSinceScrape + load.KvCacheUsage
                    : _inFlight;
            }
        }
    }

    /// <summary>Counts a request sent to the backend until the returned handle is disposed (its answer is over).</summary>
    public InFlightRequest Begin()
    {
        lock (_lock)
        {
            _inFlight++;
            _inFlightSinceScrape++;
            return new InFlightRequest(this, _scrapeEpoch);
        }
    }

    /// <summary>
    /// A scrape's result (null: it failed, or the backend is not routed to). Requests in flight now are in a new scrape's
    /// numbers, so only those sent from now on are added to it.
    /// </summary>
    public void Update(ScrapedLoad? scraped)
    {
        lock (_lock)
        {
            _scraped = scraped;
            if (scraped is null)
                return;
            _scrapeEpoch++;
            _inFlightSinceScrape = 0;
        }
    }

    private void End(int scrapeEpoch)
    {
        lock (_lock)
        {
            _inFlight--;
            // A request sent before the last scrape was counted by that scrape, not by the since-scrape count.
            if (scrapeEpoch == _scrapeEpoch)
                _inFlightSinceScrape--;
        }
    }

    /// <summary>One request in flight to the backend; disposing it ends the count.</summary>
    public readonly struct InFlightRequest(BackendLoad load, int scrapeEpoch) : IDisposable
    {
        public void Dispose() => load.End(scrapeEpoch);
    }
}
